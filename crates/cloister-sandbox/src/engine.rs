//! JavaScript execution in QuickJS: one runtime per worker, a fresh context per invocation.
//!
//! The engine enforces the heap limit (its own allocator, [`crate::heap`]), the stack limit and the
//! wall-clock deadline (interrupt handler, which JavaScript cannot catch). Nothing from the
//! host is reachable: the global scope holds only language built-ins, and a handler sees
//! its parameters, its frozen `secrets` and a frozen `context` with a bounded `log`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rquickjs::context::EvalOptions;
use rquickjs::context::intrinsic;
use rquickjs::function::Rest;
use rquickjs::{Coerced, Context, Ctx, Function, Object, Runtime, TypedArray, Value};
use serde_json::value::RawValue;

use crate::heap::{HeapWatch, LimitedHeap};
use crate::host::{Host, HostRefusal, HostRequest, HostValue, LogLines, SignHash, truncate_utf8};
use crate::protocol::{ErrorCode, Failure, Invoke, Load, LoadError, Outcome};

/// Language built-ins a function gets: no `performance` timer, no host objects, and no
/// `WeakRef`/`FinalizationRegistry` (a finalizer could run during a later call).
type Intrinsics = (
    intrinsic::Date,
    intrinsic::Eval,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::Proxy,
    intrinsic::MapSet,
    intrinsic::TypedArrays,
    intrinsic::Promise,
);

/// Globals removed from every context before any code runs: shared memory and the atomics
/// that wait on it give a cross-call (and timing) channel; the others keep work alive past
/// the call that created it.
pub const REMOVED_GLOBALS: &[&str] = &[
    "SharedArrayBuffer",
    "Atomics",
    "WeakRef",
    "FinalizationRegistry",
    "queueMicrotask",
];

/// Longest error message or stack reported back, in bytes.
const MAX_ERROR_TEXT: usize = 8192;

/// A loaded function, ready to be invoked any number of times.
pub struct Engine {
    /// A fresh context made while idle, so that creating one is off the request path.
    /// No code has ever run in it; it is used by exactly one invocation.
    spare: Option<Context>,
    /// The JavaScript heap's usage and refusals.
    heap: HeapWatch,
    rt: Runtime,
    load: Load,
    deadline: Rc<Cell<Option<Instant>>>,
    interrupted: Rc<Cell<bool>>,
    budget_ms: Cell<u64>,
    /// Where `context.log` lines and capability requests go (the supervisor, in a worker).
    host: Rc<dyn Host>,
    /// Codes of the host refusals this call's code received: an uncaught error's `code` is
    /// reported as its cause only if it is one of them (code cannot make up a refusal).
    refused: Rc<RefCell<Vec<ErrorCode>>>,
}

impl Engine {
    /// Creates the runtime, evaluates the code once and checks that the entrypoint exists.
    pub fn new(load: Load, host: Rc<dyn Host>) -> Result<Self, LoadError> {
        // The budget is the allocator's; QuickJS's own limit stays off so that every refusal
        // passes through (and is recorded by) the allocator.
        let (allocator, heap) = LimitedHeap::new(load.memory_bytes);
        let rt = Runtime::new_with_alloc(allocator).map_err(|e| LoadError {
            message: format!("cannot create JavaScript runtime: {e}"),
            line: None,
            column: None,
        })?;
        rt.set_max_stack_size(load.stack_bytes);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let interrupted = Rc::new(Cell::new(false));
        let (d, i) = (deadline.clone(), interrupted.clone());
        rt.set_interrupt_handler(Some(Box::new(move || match d.get() {
            Some(t) if Instant::now() >= t => {
                i.set(true);
                true
            }
            _ => false,
        })));
        let engine = Self {
            spare: None,
            heap,
            rt,
            load,
            deadline,
            interrupted,
            budget_ms: Cell::new(0),
            host,
            refused: Rc::default(),
        };
        engine.check()?;
        Ok(engine)
    }

    fn arm(&self, timeout: Duration) {
        self.interrupted.set(false);
        self.budget_ms.set(timeout.as_millis() as u64);
        self.deadline.set(Some(Instant::now() + timeout));
    }

    fn disarm(&self) {
        self.deadline.set(None);
    }

    fn new_context(&self) -> Result<Context, Failure> {
        let fail = |e: rquickjs::Error| Failure {
            code: ErrorCode::FunctionMemoryLimit,
            message: format!("cannot create a JavaScript context: {e}"),
            stack: None,
            cause: None,
        };
        let context = Context::custom::<Intrinsics>(&self.rt).map_err(fail)?;
        context
            .with(|ctx| {
                let g = ctx.globals();
                for name in REMOVED_GLOBALS {
                    g.remove(*name)?;
                }
                Ok::<_, rquickjs::Error>(())
            })
            .map_err(fail)?;
        Ok(context)
    }

    /// Evaluates the source in a throwaway context to report syntax errors and a missing entrypoint.
    fn check(&self) -> Result<(), LoadError> {
        self.arm(Duration::from_millis(self.load.load_timeout_ms));
        let result = self
            .new_context()
            .map_err(|f| LoadError {
                message: f.message,
                line: None,
                column: None,
            })
            .and_then(|context| {
                context.with(|ctx| {
                    if self.load.egress {
                        crate::fetch_js::install(
                            &ctx,
                            self.host.clone(),
                            self.refused.clone(),
                            false,
                        )
                        .map_err(|e| LoadError {
                            message: format!("cannot define fetch: {e}"),
                            line: None,
                            column: None,
                        })?;
                    }
                    self.instantiate(&ctx).map(|_| ()).map_err(|err| match err {
                        Instantiate::Threw(e) => {
                            let f = self.classify(&ctx, e);
                            let (line, column) = source_position(&f, &self.load.source_name);
                            LoadError {
                                message: f.message,
                                line,
                                column,
                            }
                        }
                        Instantiate::NoEntrypoint => LoadError {
                            message: format!(
                                "entrypoint `{}` is not a top-level function of the code",
                                self.load.entrypoint
                            ),
                            line: None,
                            column: None,
                        },
                    })
                })
            });
        self.disarm();
        self.rt.run_gc();
        if self.heap.refused() {
            return Err(LoadError {
                message: format!(
                    "loading the code exceeded the memory limit of {} MB",
                    self.load.memory_bytes.div_ceil(1 << 20)
                ),
                line: None,
                column: None,
            });
        }
        result
    }

    /// Runs the top-level code in `ctx` and returns the entrypoint function.
    fn instantiate<'js>(&self, ctx: &Ctx<'js>) -> Result<Function<'js>, Instantiate> {
        let mut opts = EvalOptions::default();
        opts.strict = false;
        opts.filename = Some(self.load.source_name.clone());
        let ep = &self.load.entrypoint;
        let probe = format!("typeof {ep} === 'function' ? {ep} : undefined");
        let lookup = |ctx: &Ctx<'js>| -> Result<Value<'js>, Instantiate> {
            ctx.eval(probe.as_str()).map_err(|_| {
                ctx.catch();
                Instantiate::NoEntrypoint
            })
        };
        // The entrypoint must be the code's own: a built-in of the same name (`eval`,
        // `Function`, ...) that the code leaves in place is no function of the developer's.
        let builtin = lookup(ctx)?;
        ctx.eval_with_options::<(), _>(self.load.code.as_bytes(), opts)
            .map_err(Instantiate::Threw)?;
        let value = lookup(ctx)?;
        if !builtin.is_undefined() && value == builtin {
            return Err(Instantiate::NoEntrypoint);
        }
        value.into_function().ok_or(Instantiate::NoEntrypoint)
    }

    /// Runs the handler once in a fresh context.
    pub fn invoke(&mut self, inv: Invoke) -> Outcome {
        let logs = Rc::new(RefCell::new(LogLines::default()));
        self.refused.borrow_mut().clear();
        self.arm(Duration::from_millis(inv.context.timeout_ms));
        let context = match self.spare.take() {
            Some(context) => Ok(context),
            None => self.new_context(),
        };
        self.heap.reset();
        let mut result =
            context.and_then(|context| context.with(|ctx| self.run(&ctx, &inv, logs.clone())));
        self.disarm();
        // A call during which the heap refused an allocation failed on its memory limit,
        // whatever the engine threw for it (even `null`) and even if the code caught it.
        let timed_out = matches!(&result, Err(f) if f.code == ErrorCode::FunctionTimeout);
        if self.heap.refused() && !timed_out {
            result = Err(self.memory_failure());
        }
        // Work the call queued but did not await (a promise job) would run during the next
        // call, against its deadline and with its data: nothing of one call may reach the
        // next, so a worker with pending jobs is retired instead of reused.
        let leftover = self.rt.is_job_pending();
        let retire = leftover
            || match &result {
                Ok(_) => false,
                Err(f) => {
                    matches!(
                        f.code,
                        ErrorCode::FunctionTimeout | ErrorCode::FunctionMemoryLimit
                    ) || f.message.contains("Maximum call stack size exceeded")
                }
            };
        // The lines went to the host as they were written; what is left to say is how many
        // the limits dropped (read, not unwrapped: code that keeps `context` reachable, a
        // cycle, holds the other reference).
        let logs_dropped = logs.borrow().dropped();
        Outcome {
            result,
            logs_dropped,
            retire,
        }
    }

    /// Idle-time work after a reply: collects garbage and builds the next fresh context.
    /// Optional: [`Engine::invoke`] creates a context itself when there is no spare.
    pub fn prepare(&mut self) {
        self.rt.run_gc();
        if self.spare.is_none() {
            self.spare = self.new_context().ok();
        }
    }

    fn memory_failure(&self) -> Failure {
        Failure {
            code: ErrorCode::FunctionMemoryLimit,
            message: format!(
                "function exceeded its memory limit of {} MB",
                self.load.memory_bytes.div_ceil(1 << 20)
            ),
            stack: None,
            cause: None,
        }
    }

    fn run<'js>(
        &self,
        ctx: &Ctx<'js>,
        inv: &Invoke,
        logs: Rc<RefCell<LogLines>>,
    ) -> Result<Box<RawValue>, Failure> {
        let fail = |e| self.classify(ctx, e);
        // Build the arguments before any user code runs, so the code cannot tamper with
        // Object.freeze or the objects themselves.
        let freeze: Function = ctx
            .globals()
            .get::<_, Object>("Object")
            .and_then(|o| o.get("freeze"))
            .map_err(fail)?;
        let params = ctx.json_parse(inv.params.get()).map_err(fail)?;
        let secrets = Object::new(ctx.clone()).map_err(fail)?;
        for (name, value) in &inv.secrets {
            secrets.set(name.as_str(), value.as_str()).map_err(fail)?;
        }
        for (name, b64) in &inv.binary_secrets {
            use base64::Engine as _;
            let bytes = zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| Failure {
                        code: ErrorCode::Internal,
                        message: format!("secret `{name}` arrived malformed"),
                        stack: None,
                        cause: None,
                    })?,
            );
            let array = TypedArray::<u8>::new_copy(ctx.clone(), bytes.as_slice()).map_err(fail)?;
            secrets.set(name.as_str(), array).map_err(fail)?;
        }
        let shadowed = inv.secrets.contains_key("ref") || inv.binary_secrets.contains_key("ref");
        if !inv.secret_refs.is_empty() && !shadowed {
            crate::fetch_js::define_ref(
                ctx,
                &secrets,
                inv.secret_refs.clone(),
                self.refused.clone(),
            )
            .map_err(fail)?;
        }
        freeze.call::<_, ()>((secrets.clone(),)).map_err(fail)?;
        if self.load.egress {
            crate::fetch_js::install(ctx, self.host.clone(), self.refused.clone(), true)
                .map_err(fail)?;
        }
        let context = self.context_object(ctx, inv, logs).map_err(fail)?;
        freeze.call::<_, ()>((context.clone(),)).map_err(fail)?;

        let handler = self.instantiate(ctx).map_err(|e| match e {
            Instantiate::Threw(e) => self.classify(ctx, e),
            Instantiate::NoEntrypoint => Failure {
                code: ErrorCode::FunctionError,
                message: format!(
                    "entrypoint `{}` is not a function of the code",
                    self.load.entrypoint
                ),
                stack: None,
                cause: None,
            },
        })?;
        let returned: Value = handler.call((params, secrets, context)).map_err(fail)?;
        let value = match returned.as_promise() {
            Some(p) => p.finish::<Value>().map_err(fail)?,
            None => returned,
        };
        let json = if value.is_undefined() {
            "null".to_owned()
        } else {
            match ctx.json_stringify(value).map_err(|e| self.classify(ctx, e)) {
                Ok(Some(s)) => s.to_string().map_err(fail)?,
                Ok(None) => return Err(invalid_output("the result is not JSON-serialisable")),
                Err(f) if f.code == ErrorCode::FunctionError => {
                    return Err(invalid_output(&format!(
                        "the result is not JSON-serialisable: {}",
                        f.message
                    )));
                }
                Err(f) => return Err(f),
            }
        };
        if json.len() > self.load.max_output_bytes {
            return Err(invalid_output(&format!(
                "the result is {} bytes of JSON, over the {} byte limit",
                json.len(),
                self.load.max_output_bytes
            )));
        }
        RawValue::from_string(json)
            .map_err(|e| invalid_output(&format!("the result is not valid JSON: {e}")))
    }

    fn context_object<'js>(
        &self,
        ctx: &Ctx<'js>,
        inv: &Invoke,
        logs: Rc<RefCell<LogLines>>,
    ) -> rquickjs::Result<Object<'js>> {
        let c = &inv.context;
        let obj = Object::new(ctx.clone())?;
        obj.set("functionName", c.function_name.as_str())?;
        obj.set("functionId", c.function_id.as_str())?;
        obj.set("version", c.version)?;
        obj.set("executionId", c.execution_id.as_str())?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as f64)
            .unwrap_or(0.0);
        obj.set("deadlineMs", now_ms + c.timeout_ms as f64)?;
        // No prototype: a variable named `__proto__` is a variable, not a prototype setter.
        let object: Object = ctx.globals().get("Object")?;
        let create: Function = object.get("create")?;
        let env: Object = create.call((Value::new_null(ctx.clone()),))?;
        for (k, v) in &self.load.env {
            env.set(k.as_str(), v.as_str())?;
        }
        let freeze: Function = object.get("freeze")?;
        freeze.call::<_, ()>((env.clone(),))?;
        obj.set("env", env)?;
        let host = self.host.clone();
        let log = Function::new(ctx.clone(), move |ctx: Ctx<'js>, args: Rest<Value<'js>>| {
            // Nothing is converted once the buffer is full, and the arguments of one call
            // are converted only until the line is full: however many (large) values a call
            // passes, at most one of them is copied out of the heap at a time.
            let Some(room) = logs.borrow_mut().room() else {
                return;
            };
            let mut line = String::new();
            for v in args.0 {
                if line.len() >= room {
                    break;
                }
                if !line.is_empty() {
                    line.push(' ');
                }
                let mut part = display(&ctx, v);
                truncate_utf8(&mut part, room.saturating_sub(line.len()));
                line.push_str(&part);
            }
            // Counted here (so nothing is converted past the limits), kept by the host.
            logs.borrow_mut().push(line.clone());
            host.notify(HostRequest::Log { line });
        })?;
        obj.set("log", log)?;
        if !self.load.keys.is_empty() {
            let (host, refused) = (self.host.clone(), self.refused.clone());
            let sign = Function::new(ctx.clone(), move |ctx: Ctx<'js>, args: Rest<Value<'js>>| {
                let request = sign_request(&args.0);
                settle(&ctx, request.map(|r| host.call(r)), &refused)
            })?;
            obj.set("sign", sign)?;
            let (host, refused) = (self.host.clone(), self.refused.clone());
            let public_key =
                Function::new(ctx.clone(), move |ctx: Ctx<'js>, args: Rest<Value<'js>>| {
                    let request =
                        key_name(args.0.first()).map(|key| HostRequest::PublicKey { key });
                    settle(&ctx, request.map(|r| host.call(r)), &refused)
                })?;
            obj.set("publicKey", public_key)?;
        }
        Ok(obj)
    }

    /// Turns an engine error into a classified failure, draining the pending exception.
    fn classify(&self, ctx: &Ctx<'_>, err: rquickjs::Error) -> Failure {
        let exception = matches!(err, rquickjs::Error::Exception).then(|| ctx.catch());
        if self.interrupted.get() {
            return Failure {
                code: ErrorCode::FunctionTimeout,
                message: format!(
                    "function exceeded its deadline of {} ms",
                    self.deadline_ms()
                ),
                stack: None,
                cause: None,
            };
        }
        let Some(value) = exception else {
            return match err {
                rquickjs::Error::Allocation => self.memory_failure(),
                rquickjs::Error::WouldBlock => Failure {
                    code: ErrorCode::FunctionError,
                    message: "the returned Promise can never settle (nothing left to run)".into(),
                    stack: None,
                    cause: None,
                },
                other => Failure {
                    code: ErrorCode::FunctionError,
                    message: other.to_string(),
                    stack: None,
                    cause: None,
                },
            };
        };
        // A rejection from a host call carries the stable code of the refusal as `code`.
        let cause = value
            .as_object()
            .and_then(|o| o.get::<_, Option<String>>("code").ok().flatten())
            .and_then(|c| ErrorCode::parse(&c))
            .filter(|c| self.refused.borrow().contains(c));
        let (mut message, mut stack) = match value.as_exception() {
            Some(e) => {
                let name: Option<Coerced<String>> = e.get("name").ok();
                let msg = e.message().unwrap_or_default();
                let text = match name {
                    Some(n) if !n.0.is_empty() => format!("{}: {msg}", n.0),
                    _ => msg,
                };
                (text, e.stack())
            }
            None => (format!("Uncaught {}", display(ctx, value)), None),
        };
        truncate_utf8(&mut message, MAX_ERROR_TEXT);
        if let Some(s) = &mut stack {
            truncate_utf8(s, MAX_ERROR_TEXT);
        }
        Failure {
            code: ErrorCode::FunctionError,
            message,
            stack,
            cause,
        }
    }

    fn deadline_ms(&self) -> u64 {
        self.budget_ms.get()
    }
}

enum Instantiate {
    Threw(rquickjs::Error),
    NoEntrypoint,
}

fn invalid_output(message: &str) -> Failure {
    Failure {
        code: ErrorCode::FunctionInvalidOutput,
        message: message.to_owned(),
        stack: None,
        cause: None,
    }
}

/// The key name a capability call passes first.
fn key_name(v: Option<&Value<'_>>) -> Result<String, HostRefusal> {
    v.and_then(|v| v.as_string())
        .and_then(|s| s.to_string().ok())
        .ok_or_else(|| HostRefusal::new(ErrorCode::InvalidRequest, "the key name must be a string"))
}

/// Most bytes `context.sign` takes in one call (keyvault's limit is the same).
const MAX_SIGN_MESSAGE_BYTES: usize = 64 * 1024;

/// `context.sign(key, message, {hash})`: the message is a `Uint8Array`, an `ArrayBuffer` or a
/// string (signed as UTF-8).
fn sign_request(args: &[Value<'_>]) -> Result<HostRequest, HostRefusal> {
    use base64::Engine as _;
    let key = key_name(args.first())?;
    let invalid = |m: &str| HostRefusal::new(ErrorCode::InvalidRequest, m);
    let message = args
        .get(1)
        .and_then(message_bytes)
        .ok_or_else(|| invalid("the message must be a Uint8Array, an ArrayBuffer or a string"))?;
    if message.len() > MAX_SIGN_MESSAGE_BYTES {
        return Err(HostRefusal::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the message is {} bytes; at most {MAX_SIGN_MESSAGE_BYTES} are signed",
                message.len()
            ),
        ));
    }
    let hash = match args.get(2).and_then(|o| o.as_object()) {
        None => SignHash::default(),
        Some(o) => match o.get::<_, Option<String>>("hash") {
            Ok(None) => SignHash::default(),
            Ok(Some(h)) => SignHash::parse(&h).ok_or_else(|| {
                invalid("options.hash must be \"sha256\", \"keccak256\" or \"prehashed\"")
            })?,
            Err(_) => return Err(invalid("options.hash must be a string")),
        },
    };
    Ok(HostRequest::Sign {
        key,
        message: base64::engine::general_purpose::STANDARD.encode(message),
        hash,
    })
}

/// The bytes of a `Uint8Array` (any view), an `ArrayBuffer`, or a string's UTF-8.
pub(crate) fn message_bytes(v: &Value<'_>) -> Option<Vec<u8>> {
    if let Some(s) = v.as_string() {
        return s.to_string().ok().map(String::into_bytes);
    }
    let raw = if let Ok(a) = TypedArray::<u8>::from_value(v.clone()) {
        a.as_raw()
    } else {
        rquickjs::ArrayBuffer::from_value(v.clone())?.as_raw()
    }?;
    // SAFETY: the bytes are copied out at once and no JavaScript runs while the slice is
    // alive; a detached buffer gave `None` above.
    Some(unsafe { raw.as_ref() }.to_vec())
}

/// A promise settled with the host's answer: resolved with the value, or rejected with an
/// `Error` whose `code` is the stable error code.
pub(crate) fn settle<'js>(
    ctx: &Ctx<'js>,
    answer: Result<Result<HostValue, HostRefusal>, HostRefusal>,
    refused: &RefCell<Vec<ErrorCode>>,
) -> rquickjs::Result<rquickjs::Promise<'js>> {
    use base64::Engine as _;
    let (promise, resolve, reject) = ctx.promise()?;
    let bytes = |b64: &str| -> rquickjs::Result<TypedArray<'js, u8>> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default();
        TypedArray::<u8>::new_copy(ctx.clone(), raw)
    };
    match answer.and_then(|a| a) {
        Ok(HostValue::Signature {
            signature,
            algorithm,
            key_version,
            recovery_id,
        }) => {
            let o = Object::new(ctx.clone())?;
            o.set("signature", bytes(&signature)?)?;
            o.set("algorithm", algorithm)?;
            o.set("keyVersion", key_version)?;
            if let Some(r) = recovery_id {
                o.set("recoveryId", r)?;
            }
            resolve.call::<_, ()>((o,))?;
        }
        Ok(HostValue::Response(r)) => {
            resolve.call::<_, ()>((crate::fetch_js::response(ctx, r)?,))?;
        }
        Ok(HostValue::PublicKey {
            public_key,
            algorithm,
            key_version,
        }) => {
            let o = Object::new(ctx.clone())?;
            o.set("publicKey", bytes(&public_key)?)?;
            o.set("algorithm", algorithm)?;
            o.set("keyVersion", key_version)?;
            resolve.call::<_, ()>((o,))?;
        }
        Err(refusal) => {
            let mut codes = refused.borrow_mut();
            if !codes.contains(&refusal.code) {
                codes.push(refusal.code);
            }
            drop(codes);
            let e = rquickjs::Exception::from_message(ctx.clone(), &refusal.message)?;
            e.as_object().set("code", refusal.code.as_str())?;
            reject.call::<_, ()>((e,))?;
        }
    }
    Ok(promise)
}

/// Renders a value for logs and messages: strings as-is, other values as JSON when possible.
fn display<'js>(ctx: &Ctx<'js>, v: Value<'js>) -> String {
    if let Some(s) = v.as_string() {
        return s.to_string().unwrap_or_default();
    }
    if v.is_undefined() {
        return "undefined".into();
    }
    if let Some(e) = v.as_exception() {
        return e.message().unwrap_or_default();
    }
    match ctx.json_stringify(v.clone()) {
        Ok(Some(s)) => s.to_string().unwrap_or_default(),
        _ => {
            ctx.catch();
            v.get::<Coerced<String>>().map(|c| c.0).unwrap_or_else(|_| {
                ctx.catch();
                "[unprintable]".into()
            })
        }
    }
}

/// Finds `SOURCE:LINE:COL` in a syntax error's stack or message.
fn source_position(f: &Failure, source: &str) -> (Option<u32>, Option<u32>) {
    let texts = [f.stack.as_deref().unwrap_or(""), f.message.as_str()];
    for text in texts {
        if let Some(idx) = text.find(&format!("{source}:")) {
            let rest = &text[idx + source.len() + 1..];
            let mut parts = rest.splitn(3, |c: char| !c.is_ascii_digit());
            let line = parts.next().and_then(|s| s.parse().ok());
            let column = parts.next().and_then(|s| s.parse().ok());
            if line.is_some() {
                return (line, column);
            }
        }
    }
    (None, None)
}
