//! The JavaScript face of outbound requests: a WHATWG-shaped `fetch(url, init)` whose
//! request the supervisor makes (the worker has no sockets), the `Response` it resolves
//! with, and `secrets.ref(name)` for egress-only secrets.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use base64::Engine as _;
use rquickjs::function::Rest;
use rquickjs::{Array, Coerced, Ctx, Function, IntoJs, Object, Promise, TypedArray, Value};

use crate::host::{FetchRequest, FetchResponse, Host, HostRefusal, HostRequest, Redirect};
use crate::protocol::ErrorCode;

/// Largest request body `fetch` sends, in bytes (the supervisor checks again).
pub const MAX_FETCH_BODY_BYTES: usize = 1 << 20;
/// Most request headers one `fetch` sends.
const MAX_HEADERS: usize = 64;
/// Longest URL, in bytes.
const MAX_URL_BYTES: usize = 8192;

/// Installs the global `fetch`. While code loads (`live` false) it refuses every call: a
/// request may only be made by an invocation, within its deadline.
pub(crate) fn install<'js>(
    ctx: &Ctx<'js>,
    host: Rc<dyn Host>,
    refused: Rc<RefCell<Vec<ErrorCode>>>,
    live: bool,
) -> rquickjs::Result<()> {
    let fetch = Function::new(ctx.clone(), move |ctx: Ctx<'js>, args: Rest<Value<'js>>| {
        let request = if live {
            request(&args.0)
        } else {
            Err(HostRefusal::new(
                ErrorCode::CapabilityNotGranted,
                "fetch is available while the handler runs, not while the code loads",
            ))
        };
        crate::engine::settle(
            &ctx,
            request.map(|r| host.call(HostRequest::Fetch(r))),
            &refused,
        )
    })?;
    ctx.globals().set("fetch", fetch)
}

/// Defines `secrets.ref(name)` (not enumerable): the reference to place in a request header
/// where the supervisor injects egress-only secret `name`. Unknown names throw an error
/// with `code` `egress_secret_refused`.
pub(crate) fn define_ref<'js>(
    ctx: &Ctx<'js>,
    secrets: &Object<'js>,
    refs: BTreeMap<String, String>,
    refused: Rc<RefCell<Vec<ErrorCode>>>,
) -> rquickjs::Result<()> {
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, name: Coerced<String>| -> rquickjs::Result<String> {
            if let Some(r) = refs.get(&name.0) {
                return Ok(r.clone());
            }
            let code = ErrorCode::EgressSecretRefused;
            remember(&refused, code);
            let e = rquickjs::Exception::from_message(
                ctx.clone(),
                &format!(
                    "no egress-only secret named {:?} (fn deploy --egress-secret NAME=ORIGIN:HEADER)",
                    name.0
                ),
            )?;
            e.as_object().set("code", code.as_str())?;
            Err(e.throw())
        },
    )?;
    let object: Object = ctx.globals().get("Object")?;
    let define: Function = object.get("defineProperty")?;
    let descriptor = Object::new(ctx.clone())?;
    descriptor.set("value", f)?;
    descriptor.set("enumerable", false)?;
    define.call::<_, Value>((secrets.clone(), "ref", descriptor))?;
    Ok(())
}

fn remember(refused: &RefCell<Vec<ErrorCode>>, code: ErrorCode) {
    let mut codes = refused.borrow_mut();
    if !codes.contains(&code) {
        codes.push(code);
    }
}

fn invalid(m: impl Into<String>) -> HostRefusal {
    HostRefusal::new(ErrorCode::InvalidRequest, m)
}

/// Reads `fetch(url, {method, headers, body, redirect})`.
fn request(args: &[Value<'_>]) -> Result<FetchRequest, HostRefusal> {
    let url = args
        .first()
        .and_then(Value::as_string)
        .and_then(|s| s.to_string().ok())
        .ok_or_else(|| invalid("fetch: the URL must be a string"))?;
    if url.len() > MAX_URL_BYTES {
        return Err(invalid(format!(
            "fetch: the URL is over {MAX_URL_BYTES} bytes"
        )));
    }
    let init = match args.get(1) {
        None => None,
        Some(v) if v.is_undefined() || v.is_null() => None,
        Some(v) => Some(
            v.as_object()
                .ok_or_else(|| invalid("fetch: init must be an object"))?,
        ),
    };
    let field = |name: &str| -> Option<Value<'_>> {
        init.and_then(|o| o.get::<_, Value>(name).ok())
            .filter(|v| !v.is_undefined() && !v.is_null())
    };
    let method = match field("method") {
        None => "GET".to_owned(),
        Some(v) => v
            .as_string()
            .and_then(|s| s.to_string().ok())
            .ok_or_else(|| invalid("fetch: init.method must be a string"))?
            .to_ascii_uppercase(),
    };
    if method.is_empty()
        || method.len() > 16
        || !method.bytes().all(|b| b.is_ascii_alphabetic())
        || matches!(method.as_str(), "CONNECT" | "TRACE" | "TRACK")
    {
        return Err(invalid(format!("fetch: method {method:?} is not allowed")));
    }
    let headers = match field("headers") {
        None => Vec::new(),
        Some(v) => headers(&v)?,
    };
    let body = match field("body") {
        None => Vec::new(),
        Some(v) => crate::engine::message_bytes(&v).ok_or_else(|| {
            invalid("fetch: init.body must be a string, a Uint8Array or an ArrayBuffer")
        })?,
    };
    if !body.is_empty() && matches!(method.as_str(), "GET" | "HEAD") {
        return Err(invalid(format!("fetch: a {method} request has no body")));
    }
    if body.len() > MAX_FETCH_BODY_BYTES {
        return Err(HostRefusal::new(
            ErrorCode::EgressSentLimit,
            format!(
                "fetch: the body is {} bytes; at most {MAX_FETCH_BODY_BYTES} are sent",
                body.len()
            ),
        ));
    }
    let redirect = match field("redirect") {
        None => Redirect::Follow,
        Some(v) => v
            .as_string()
            .and_then(|s| s.to_string().ok())
            .and_then(|s| Redirect::parse(&s))
            .ok_or_else(|| {
                invalid("fetch: init.redirect must be \"follow\", \"manual\" or \"error\"")
            })?,
    };
    Ok(FetchRequest {
        url,
        method,
        headers,
        body: if body.is_empty() {
            String::new()
        } else {
            base64::engine::general_purpose::STANDARD.encode(&body)
        },
        redirect,
    })
}

/// `init.headers`: a plain object of names to values, or an array of `[name, value]` pairs.
fn headers(v: &Value<'_>) -> Result<Vec<(String, String)>, HostRefusal> {
    let bad =
        || invalid("fetch: init.headers must be an object or an array of [name, value] pairs");
    let text = |v: Value<'_>| -> Result<String, HostRefusal> {
        v.get::<Coerced<String>>().map(|c| c.0).map_err(|_| bad())
    };
    let mut out = Vec::new();
    if let Some(a) = v.as_array() {
        for pair in a.iter::<Value>() {
            let pair = pair.map_err(|_| bad())?;
            let pair = pair.as_array().filter(|p| p.len() == 2).ok_or_else(bad)?;
            let name = text(pair.get(0).map_err(|_| bad())?)?;
            let value = text(pair.get(1).map_err(|_| bad())?)?;
            out.push((name, value));
            if out.len() > MAX_HEADERS {
                break;
            }
        }
    } else {
        let o = v.as_object().ok_or_else(bad)?;
        for prop in o.props::<String, Value>() {
            let (name, value) = prop.map_err(|_| bad())?;
            out.push((name, text(value)?));
            if out.len() > MAX_HEADERS {
                break;
            }
        }
    }
    if out.len() > MAX_HEADERS {
        return Err(invalid(format!(
            "fetch: at most {MAX_HEADERS} request headers"
        )));
    }
    Ok(out)
}

fn resolved<'js, V: IntoJs<'js>>(ctx: &Ctx<'js>, v: V) -> rquickjs::Result<Promise<'js>> {
    let (promise, resolve, _) = ctx.promise()?;
    resolve.call::<_, ()>((v,))?;
    Ok(promise)
}

/// The `Response` a `fetch` resolves with: `status`, `statusText`, `ok`, `url`,
/// `redirected`, `headers` (`get`, `has`, `entries`, `keys`, `values`, `forEach`) and the body
/// as `text()`, `json()`, `arrayBuffer()` or `bytes()` (each may be read any number of times).
pub(crate) fn response<'js>(ctx: &Ctx<'js>, r: FetchResponse) -> rquickjs::Result<Object<'js>> {
    let body = Rc::new(
        base64::engine::general_purpose::STANDARD
            .decode(&r.body)
            .unwrap_or_default(),
    );
    let o = Object::new(ctx.clone())?;
    o.set("status", r.status)?;
    o.set("statusText", r.status_text)?;
    o.set("ok", (200..300).contains(&r.status))?;
    o.set("url", r.url)?;
    o.set("redirected", r.redirected)?;
    o.set("type", "basic")?;
    o.set("headers", headers_object(ctx, Rc::new(r.headers))?)?;
    let b = body.clone();
    o.set(
        "text",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            resolved(&ctx, String::from_utf8_lossy(&b).into_owned())
        })?,
    )?;
    let b = body.clone();
    o.set(
        "json",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            let (promise, resolve, reject) = ctx.promise()?;
            match ctx.json_parse(b.as_slice().to_vec()) {
                Ok(v) => resolve.call::<_, ()>((v,))?,
                Err(rquickjs::Error::Exception) => reject.call::<_, ()>((ctx.catch(),))?,
                Err(e) => return Err(e),
            }
            Ok::<_, rquickjs::Error>(promise)
        })?,
    )?;
    let b = body.clone();
    o.set(
        "arrayBuffer",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            let buf = rquickjs::ArrayBuffer::new_copy(ctx.clone(), b.as_slice())?;
            resolved(&ctx, buf)
        })?,
    )?;
    o.set(
        "bytes",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            let a = TypedArray::<u8>::new_copy(ctx.clone(), body.as_slice())?;
            resolved(&ctx, a)
        })?,
    )?;
    Ok(o)
}

fn headers_object<'js>(
    ctx: &Ctx<'js>,
    h: Rc<Vec<(String, String)>>,
) -> rquickjs::Result<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    let all = h.clone();
    o.set(
        "get",
        Function::new(
            ctx.clone(),
            move |name: Coerced<String>| -> Option<String> {
                let name = name.0.to_ascii_lowercase();
                let values: Vec<&str> = all
                    .iter()
                    .filter(|(k, _)| *k == name)
                    .map(|(_, v)| v.as_str())
                    .collect();
                (!values.is_empty()).then(|| values.join(", "))
            },
        )?,
    )?;
    let all = h.clone();
    o.set(
        "has",
        Function::new(ctx.clone(), move |name: Coerced<String>| -> bool {
            let name = name.0.to_ascii_lowercase();
            all.iter().any(|(k, _)| *k == name)
        })?,
    )?;
    let pairs = |ctx: &Ctx<'js>, h: &[(String, String)]| -> rquickjs::Result<Array<'js>> {
        let a = Array::new(ctx.clone())?;
        for (i, (k, v)) in h.iter().enumerate() {
            let p = Array::new(ctx.clone())?;
            p.set(0, k.as_str())?;
            p.set(1, v.as_str())?;
            a.set(i, p)?;
        }
        Ok(a)
    };
    let all = h.clone();
    o.set(
        "entries",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| pairs(&ctx, &all))?,
    )?;
    let all = h.clone();
    o.set(
        "keys",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            let a = Array::new(ctx.clone())?;
            for (i, (k, _)) in all.iter().enumerate() {
                a.set(i, k.as_str())?;
            }
            Ok::<_, rquickjs::Error>(a)
        })?,
    )?;
    let all = h.clone();
    o.set(
        "values",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            let a = Array::new(ctx.clone())?;
            for (i, (_, v)) in all.iter().enumerate() {
                a.set(i, v.as_str())?;
            }
            Ok::<_, rquickjs::Error>(a)
        })?,
    )?;
    o.set(
        "forEach",
        Function::new(ctx.clone(), move |f: Function<'js>| {
            for (k, v) in h.iter() {
                f.call::<_, ()>((v.as_str(), k.as_str()))?;
            }
            Ok::<_, rquickjs::Error>(())
        })?,
    )?;
    Ok(o)
}
