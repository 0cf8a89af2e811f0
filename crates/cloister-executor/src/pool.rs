//! The supervisor: warm worker pools per function version, code cache, limits and eviction.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister_sandbox::protocol::{Failure, InvocationContext, Invoke, Load, LoadError, Privileges};
use cloister_types::{ErrorCode, Limits};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::config::ExecutorConfig;
use crate::places::Places;
use crate::secrets::{GrantRequest, RunManifest, SecretError, SecretSource, redact};
use crate::worker::{SpawnError, WorkerFault, WorkerProcess};

/// Which function version the gateway asks to run. Only a pointer: what runs, with which
/// entrypoint, limits and secrets, comes from the manifest keyvault grants for the code loaded.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Function id.
    pub function_id: String,
    /// Version number.
    pub version: u32,
    /// `sha256:<hex>` of the source: where to look in the code cache.
    pub code_hash: String,
    /// Change counter of the function's secrets namespace, as the gateway saw it.
    pub secrets_epoch: u64,
}

/// One invocation to run.
#[derive(Debug)]
pub struct Job {
    /// What to run.
    pub spec: FunctionSpec,
    /// JSON parameters.
    pub params: Box<RawValue>,
    /// Source, when the caller was told the executor lacks it.
    pub code: Option<String>,
    /// Unique execution id.
    pub execution_id: String,
    /// For a sealed invocation: the function, version and code its caller sealed it for;
    /// anything else is refused before it runs.
    pub expected: Option<crate::sealed::Expected>,
}

/// Why a job produced no result, classified by its public error code.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFailure {
    /// Public error code (`function_timeout`, `secret_missing`, `rate_limited`, ...).
    pub code: ErrorCode,
    /// Human message (never contains secret values).
    pub message: String,
    /// JavaScript stack, when there is one.
    pub stack: Option<String>,
    /// The stable code the function's uncaught error carried (`details.code` in the API).
    pub cause: Option<ErrorCode>,
}

impl From<Failure> for RunFailure {
    fn from(f: Failure) -> Self {
        Self {
            code: f.code,
            message: f.message,
            stack: f.stack,
            cause: f.cause,
        }
    }
}

/// What happened to a job.
#[derive(Debug)]
pub enum JobResult {
    /// The function ran (successfully or not).
    Ran {
        /// Result JSON or classified failure.
        result: Result<Box<RawValue>, RunFailure>,
        /// Captured log lines.
        logs: Vec<String>,
        /// Time spent, including any worker start.
        duration: Duration,
        /// The manifest it ran by, once keyvault granted one (what receipts name).
        manifest: Option<Arc<RunManifest>>,
        /// The worker that ran it was stopped or retired afterwards (deadline, memory,
        /// crash): the function's next call starts a new one.
        worker_replaced: bool,
        /// The signatures keyvault made for it (what receipts list).
        key_uses: Vec<cloister_types::receipt::ReceiptKeyUse>,
        /// The origins its `fetch` requests reached (what receipts list).
        egress: Vec<cloister_types::receipt::ReceiptEgress>,
    },
    /// The executor does not hold this code; send it.
    CodeRequired,
}

/// `sha256:<hex>` of a source text (shared with the gateway).
pub use cloister_types::code_hash;

struct Pool {
    load: Load,
    idle: Mutex<Vec<WorkerProcess>>,
    slots: Semaphore,
    last_used: Mutex<Instant>,
}

/// Snapshot of one idle worker for status reports.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot {
    /// Function id it serves.
    pub function_id: String,
    /// Version it serves.
    pub version: u32,
    /// Process id.
    pub pid: u32,
    /// Resident memory.
    pub rss_bytes: u64,
}

/// (function id, version, loaded code hash, manifest digest).
type PoolKey = (String, u32, String, String);

/// Owns every worker of this executor.
pub struct Supervisor {
    cfg: ExecutorConfig,
    secrets: Arc<dyn SecretSource>,
    pools: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    code: Mutex<CodeCache>,
    places: Arc<Places>,
    spawned: AtomicU64,
    retired: AtomicU64,
    isolated: AtomicBool,
    warned_uid: AtomicBool,
    validating: Semaphore,
    /// Outbound HTTP: one client (TLS configuration and pool) per function version.
    egress: cloister_egress::Egress,
    /// Outbound requests by (function id, origin) since start (for metrics).
    egress_totals: Mutex<std::collections::BTreeMap<(String, String), EgressTotals>>,
}

/// Outbound requests of one function to one origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressTotals {
    /// Requests made or refused.
    pub requests: u64,
    /// Requests that got no response.
    pub failures: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
}

/// Most (function, origin) pairs counted; past it, new pairs count under origin `other`.
const MAX_EGRESS_SERIES: usize = 4096;

/// Most deploy checks (throwaway workers) running at once.
pub const MAX_VALIDATIONS: usize = 4;

#[derive(Default)]
struct CodeCache {
    by_hash: HashMap<String, Arc<str>>,
    order: VecDeque<String>,
}

impl CodeCache {
    fn get(&self, hash: &str) -> Option<Arc<str>> {
        self.by_hash.get(hash).cloned()
    }

    fn insert(&mut self, hash: String, code: Arc<str>, cap: usize) {
        if self.by_hash.insert(hash.clone(), code).is_none() {
            self.order.push_back(hash);
        }
        while self.order.len() > cap {
            if let Some(old) = self.order.pop_front() {
                self.by_hash.remove(&old);
            }
        }
    }
}

fn failure(code: ErrorCode, message: impl Into<String>) -> RunFailure {
    RunFailure {
        code,
        message: message.into(),
        stack: None,
        cause: None,
    }
}

/// Why code could not be validated.
#[derive(Debug)]
#[non_exhaustive]
pub enum ValidateError {
    /// The code does not load (syntax error, missing entrypoint, top-level throw).
    Invalid(LoadError),
    /// No worker could check it now (every place busy, or the process did not start).
    Unavailable(String),
}

/// Why no worker could be started.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// Every place is taken by a busy worker.
    #[error("this executor runs its maximum of {0} workers and none is idle; try again shortly")]
    Full(usize),
    /// The process did not start or the code did not load.
    #[error(transparent)]
    Spawn(SpawnError),
}

/// Where confidential code is cached: under its function, version and hash.
fn confidential_key(spec: &FunctionSpec) -> String {
    format!(
        "confidential/{}/{}/{}",
        spec.function_id, spec.version, spec.code_hash
    )
}

enum CodeError {
    Required,
    Mismatch,
    /// Confidential code as stored (sealed under the function's code key): opened once
    /// keyvault has granted the key with the manifest.
    Stored(String),
}

impl Supervisor {
    /// Creates a supervisor with the given secret source.
    pub fn new(cfg: ExecutorConfig, secrets: Arc<dyn SecretSource>) -> Arc<Self> {
        let places = Places::new(cfg.max_workers_total, cfg.worker_uids.clone());
        Arc::new(Self {
            cfg,
            secrets,
            pools: Mutex::new(HashMap::new()),
            code: Mutex::new(CodeCache::default()),
            places,
            spawned: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            isolated: AtomicBool::new(false),
            warned_uid: AtomicBool::new(false),
            validating: Semaphore::new(MAX_VALIDATIONS),
            egress: cloister_egress::Egress::new(cloister_egress::EgressLimits::default()),
            egress_totals: Mutex::default(),
        })
    }

    /// Live worker processes (taken places).
    pub fn live_workers(&self) -> usize {
        self.places.live()
    }

    /// The configuration in force.
    pub fn config(&self) -> &ExecutorConfig {
        &self.cfg
    }

    /// Clamps requested limits to this executor's maxima (the gateway is not trusted to).
    pub fn clamp(&self, limits: Limits) -> Limits {
        let max = &self.cfg.limits;
        Limits {
            timeout_ms: limits.timeout_ms.clamp(1, max.max_timeout_ms),
            memory_mb: limits.memory_mb.clamp(1, max.max_memory_mb),
        }
    }

    fn load_for(
        &self,
        code: Arc<str>,
        entrypoint: &str,
        limits: Limits,
        m: Option<&RunManifest>,
    ) -> Load {
        Load {
            code: code.to_string(),
            entrypoint: entrypoint.to_owned(),
            source_name: m
                .and_then(|m| m.source_name.clone())
                .unwrap_or_else(|| cloister_sandbox::protocol::DEFAULT_SOURCE_NAME.to_owned()),
            env: m.map(|m| m.env.clone()).unwrap_or_default(),
            keys: m.map(|m| m.keys.clone()).unwrap_or_default(),
            egress: m.is_some_and(|m| m.egress.is_some()),
            memory_bytes: (limits.memory_mb as usize) << 20,
            stack_bytes: self.cfg.stack_bytes,
            load_timeout_ms: limits.timeout_ms,
            max_output_bytes: self.cfg.limits.max_output_bytes,
        }
    }

    /// Compiles code in a throwaway worker; `Err(Invalid)` carries the syntax error.
    pub async fn validate(
        &self,
        code: String,
        entrypoint: &str,
        limits: Limits,
    ) -> Result<(), ValidateError> {
        // Deploy checks may take only a few places, so deploys cannot crowd out invocations.
        let Ok(_turn) = self.validating.try_acquire() else {
            return Err(ValidateError::Unavailable(format!(
                "{MAX_VALIDATIONS} deploys are being checked already; retry shortly"
            )));
        };
        let limits = self.clamp(limits);
        let load = self.load_for(Arc::from(code), entrypoint, limits, None);
        let deadline = Duration::from_millis(limits.timeout_ms) + self.cfg.kill_grace * 5;
        match self.start_worker(load, deadline).await {
            Ok(mut w) => {
                w.kill().await;
                Ok(())
            }
            Err(StartError::Spawn(SpawnError::Load(e))) => Err(ValidateError::Invalid(e)),
            Err(e) => Err(ValidateError::Unavailable(e.to_string())),
        }
    }

    /// The source for `spec`: from the cache (where it was checked against its hash) or the
    /// code sent, which must hash to `spec.code_hash`.
    fn code_for(&self, spec: &FunctionSpec, code: Option<String>) -> Result<Arc<str>, CodeError> {
        if let Some(c) = lock(&self.code).get(&spec.code_hash) {
            return Ok(c);
        }
        // Confidential code is cached per function and version, never by its (public) hash
        // alone: another function naming the same hash must not get its plaintext.
        if let Some(c) = lock(&self.code).get(&confidential_key(spec)) {
            return Ok(c);
        }
        let c = code.ok_or(CodeError::Required)?;
        if let Some(stored) = c.strip_prefix(cloister_types::sealed::STORED_CODE_PREFIX) {
            return Err(CodeError::Stored(stored.to_owned()));
        }
        if code_hash(&c) != spec.code_hash {
            return Err(CodeError::Mismatch);
        }
        let c: Arc<str> = Arc::from(c);
        lock(&self.code).insert(
            spec.code_hash.clone(),
            c.clone(),
            self.cfg.code_cache_entries,
        );
        Ok(c)
    }

    /// Opens stored confidential code with the code key keyvault granted with the manifest;
    /// it must hash to `spec.code_hash` (which keyvault matched with the manifest). The
    /// plaintext lives only in this process's code cache and the workers it starts.
    fn open_stored(
        &self,
        spec: &FunctionSpec,
        grant: &crate::secrets::Grant,
        blob: &str,
    ) -> Result<Arc<str>, &'static str> {
        use base64::Engine as _;
        let key = grant
            .code_key
            .as_ref()
            .ok_or("keyvault granted no code key: the manifest is not confidential")?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| "stored confidential code is not base64")?;
        let aad = cloister_crypto::Aad::from_encoded(cloister_types::sealed::stored_code_aad(
            &spec.function_id,
            spec.version,
            &spec.code_hash,
        ));
        let plain = cloister_crypto::aead::open(key, &aad, &sealed).map_err(
            |_| "stored confidential code does not open (altered, or another version's)",
        )?;
        let text =
            std::str::from_utf8(plain.expose()).map_err(|_| "confidential code is not UTF-8")?;
        if code_hash(text) != spec.code_hash {
            return Err("confidential code does not hash to the function's code hash");
        }
        let c: Arc<str> = Arc::from(text);
        lock(&self.code).insert(
            confidential_key(spec),
            c.clone(),
            self.cfg.code_cache_entries,
        );
        Ok(c)
    }

    fn pool_for(&self, m: &RunManifest, source: Arc<str>, limits: Limits) -> Arc<Pool> {
        let key = (
            m.function_id.clone(),
            m.version,
            m.code_hash.clone(),
            m.digest.clone(),
        );
        if let Some(p) = lock(&self.pools).get(&key) {
            return p.clone();
        }
        let pool = Arc::new(Pool {
            load: self.load_for(source, &m.entrypoint, limits, Some(m)),
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(workers_for(&self.cfg, m)),
            last_used: Mutex::new(Instant::now()),
        });
        lock(&self.pools).entry(key).or_insert(pool).clone()
    }

    /// Runs one job to completion.
    pub async fn run(&self, job: Job) -> JobResult {
        let mut granted = None;
        let mut used = Used::default();
        let mut r = self.run_job(job, &mut granted, &mut used).await;
        if let JobResult::Ran {
            manifest,
            key_uses,
            egress,
            ..
        } = &mut r
        {
            *manifest = granted;
            *key_uses = used.key_uses;
            *egress = used.egress;
        }
        r
    }

    async fn run_job(
        &self,
        job: Job,
        granted: &mut Option<Arc<RunManifest>>,
        used: &mut Used,
    ) -> JobResult {
        let started = Instant::now();
        let spec = &job.spec;
        let (source, stored) = match self.code_for(spec, job.code) {
            Ok(c) => (Some(c), None),
            Err(CodeError::Required) => return JobResult::CodeRequired,
            Err(CodeError::Stored(blob)) => (None, Some(blob)),
            Err(CodeError::Mismatch) => {
                let msg = "the code sent does not match the function's code hash";
                return ran(
                    Err(failure(ErrorCode::InvalidRequest, msg)),
                    Vec::new(),
                    started,
                );
            }
        };
        // `source` hashes to spec.code_hash (checked when it entered the cache): keyvault
        // compares exactly that with the manifest.
        let grant = match self
            .secrets
            .grant(GrantRequest {
                function_id: &spec.function_id,
                version: spec.version,
                loaded_code_hash: &spec.code_hash,
                epoch: spec.secrets_epoch,
                execution_id: &job.execution_id,
            })
            .await
        {
            Ok(g) => g,
            Err(SecretError::Missing(name)) => {
                let msg = format!("declared secret `{name}` does not exist");
                return ran(
                    Err(failure(ErrorCode::SecretMissing, msg)),
                    Vec::new(),
                    started,
                );
            }
            Err(SecretError::Refused { code, message }) => {
                return ran(Err(failure(code, message)), Vec::new(), started);
            }
            Err(e @ SecretError::Unavailable(_)) => {
                return ran(
                    Err(failure(ErrorCode::Unavailable, e.to_string())),
                    Vec::new(),
                    started,
                );
            }
        };
        *granted = Some(grant.manifest.clone());
        let m = grant.manifest.as_ref();
        // Confidential code runs only on sealed requests: a plain call's errors, stack and
        // logs would show the gateway pieces of the code.
        if grant.code_key.is_some() && job.expected.is_none() {
            let msg = "this function's code is confidential: invoke it sealed (--sealed)";
            return ran(
                Err(failure(ErrorCode::InvalidRequest, msg)),
                Vec::new(),
                started,
            );
        }
        let source = match (source, stored) {
            (Some(c), _) => c,
            (None, Some(blob)) => match self.open_stored(spec, &grant, &blob) {
                Ok(c) => c,
                Err(msg) => {
                    return ran(
                        Err(failure(ErrorCode::InvalidRequest, msg)),
                        Vec::new(),
                        started,
                    );
                }
            },
            (None, None) => return JobResult::CodeRequired,
        };
        if let Some(f) = job.expected.as_ref().and_then(|e| e.manifest_mismatch(m)) {
            return ran(Err(f), Vec::new(), started);
        }
        if m.runtime != "javascript" || cloister_types::Entrypoint::parse(&m.entrypoint).is_err() {
            let msg = format!("this executor cannot run runtime {:?}", m.runtime);
            return ran(
                Err(failure(ErrorCode::Unavailable, msg)),
                Vec::new(),
                started,
            );
        }
        let limits = self.clamp(m.limits);
        let pool = self.pool_for(m, source, limits);
        let secrets = grant.secrets.clone();
        // Logs and errors are redacted of every value, egress-only ones included.
        let every_value: Arc<crate::secrets::SecretValues> = if grant.egress_secrets.is_empty() {
            secrets.clone()
        } else {
            Arc::new(
                secrets
                    .iter()
                    .chain(grant.egress_secrets.iter())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        };
        let timeout = Duration::from_millis(limits.timeout_ms);
        let Ok(Ok(_permit)) = tokio::time::timeout(timeout, pool.slots.acquire()).await else {
            let msg = "too many concurrent invocations of this function";
            return ran(
                Err(failure(ErrorCode::RateLimited, msg)),
                Vec::new(),
                started,
            );
        };
        let idle = lock(&pool.idle).pop();
        let mut worker = match idle {
            Some(w) => w,
            None => match self.spawn(&pool).await {
                Ok(w) => w,
                Err(f) => return ran(Err(f), Vec::new(), started),
            },
        };
        let remaining = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        let session = match self.egress_session(m, &grant.egress_secrets, remaining) {
            Ok(s) => s,
            Err(f) => return ran(Err(f), Vec::new(), started),
        };
        // UTF-8 values reach the code as strings, any other bytes as a Uint8Array; egress-only
        // values never reach it.
        let mut text = std::collections::BTreeMap::new();
        let mut binary = std::collections::BTreeMap::new();
        for (k, v) in secrets.iter().filter(|(k, _)| m.readable_secret(k)) {
            match std::str::from_utf8(v) {
                Ok(s) => {
                    text.insert(k.clone(), s.to_owned());
                }
                Err(_) => {
                    use base64::Engine as _;
                    binary.insert(
                        k.clone(),
                        base64::engine::general_purpose::STANDARD.encode(v),
                    );
                }
            }
        }
        let inv = Invoke {
            params: job.params,
            secrets: text,
            binary_secrets: binary,
            context: InvocationContext {
                function_name: m.name.clone(),
                function_id: m.function_id.clone(),
                version: m.version,
                execution_id: job.execution_id,
                timeout_ms: limits.timeout_ms,
            },
            secret_refs: session.as_ref().map(|s| s.refs()).unwrap_or_default(),
        };
        let capabilities = crate::capabilities::Granted::for_manifest(
            m,
            &inv.context.execution_id,
            &self.secrets,
            session,
        );
        let crate::worker::Invoked { result, mut logs } = worker
            .invoke(inv, remaining + self.cfg.kill_grace, &capabilities)
            .await;
        used.key_uses = capabilities.take_key_uses();
        let records = capabilities.take_egress_records();
        if !records.is_empty() {
            logs.extend(crate::capabilities::egress_log_lines(&records));
            self.count_egress(&m.function_id, &records);
            used.egress = receipt_egress(&records);
        }
        let logs: Vec<String> = logs
            .iter()
            .map(|l| capabilities.redact(redact(l, &every_value)))
            .collect();
        *lock(&pool.last_used) = Instant::now();
        match result {
            Ok(outcome) => {
                let retire = outcome.retire;
                if retire {
                    self.retire(worker);
                } else {
                    lock(&pool.idle).push(worker);
                }
                // A backstop: the result cannot hold an egress-only value in any form the
                // session knows (the session already redacted what came back).
                let result = outcome.result.and_then(|raw| {
                    let text = capabilities.redact(raw.get().to_owned());
                    if text == raw.get() {
                        return Ok(raw);
                    }
                    RawValue::from_string(text).map_err(|_| cloister_sandbox::protocol::Failure {
                        code: ErrorCode::FunctionInvalidOutput,
                        message: "the result held an egress-only secret and was withheld".into(),
                        stack: None,
                        cause: None,
                    })
                });
                let result = result.map_err(|f| {
                    let mut f = RunFailure::from(f);
                    f.message = capabilities.redact(redact(&f.message, &every_value));
                    f.stack = f
                        .stack
                        .map(|s| capabilities.redact(redact(&s, &every_value)));
                    f
                });
                replaced_if(retire, ran(result, logs, started))
            }
            Err(WorkerFault::Timeout) => {
                self.forget(worker);
                let msg = format!(
                    "function exceeded its deadline of {} ms; the supervisor stopped its worker",
                    limits.timeout_ms
                );
                replaced_if(
                    true,
                    ran(Err(failure(ErrorCode::FunctionTimeout, msg)), logs, started),
                )
            }
            Err(WorkerFault::Crashed(why)) => {
                self.forget(worker);
                replaced_if(
                    true,
                    ran(Err(failure(ErrorCode::FunctionError, why)), logs, started),
                )
            }
        }
    }

    fn count_egress(&self, function_id: &str, records: &[cloister_egress::Record]) {
        let mut totals = lock(&self.egress_totals);
        for r in records {
            // Labelled by allowlist entry (bounded by the manifest), never by host name.
            let allowed = r.allowed.clone().unwrap_or_else(|| "refused".to_owned());
            let mut key = (function_id.to_owned(), allowed);
            if !totals.contains_key(&key) && totals.len() >= MAX_EGRESS_SERIES {
                key.1 = "other".to_owned();
            }
            let t = totals.entry(key).or_default();
            t.requests += 1;
            t.failures += u64::from(r.status.is_none());
            t.bytes_sent += r.sent;
            t.bytes_received += r.received;
        }
    }

    /// Outbound requests by (function id, origin) since this executor started.
    pub fn egress_totals(&self) -> Vec<((String, String), EgressTotals)> {
        lock(&self.egress_totals)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The outbound-request session of one invocation of `m` (none when its manifest
    /// grants no egress), holding the values of its egress-only secrets.
    fn egress_session(
        &self,
        m: &RunManifest,
        secrets: &crate::secrets::SecretValues,
        remaining: Duration,
    ) -> Result<Option<cloister_egress::Session>, RunFailure> {
        let Some(policy) = &m.egress else {
            return Ok(None);
        };
        let client = self.egress.function(&m.digest, policy).map_err(|e| {
            failure(
                ErrorCode::Unavailable,
                format!("cannot set up this function's outbound requests: {e}"),
            )
        })?;
        let values = secrets
            .iter()
            .filter(|(k, _)| policy.secrets.contains_key(*k))
            .map(|(k, v)| (k.clone(), zeroize::Zeroizing::new(v.to_vec())))
            .collect();
        client
            .session(values, tokio::time::Instant::now() + remaining)
            .map(Some)
            .map_err(|e| failure(ErrorCode::Unavailable, e.to_string()))
    }

    /// Starts a worker in one of the `max_workers_total` places (a hard cap: the place is
    /// taken before the process exists and travels with it; dropping the worker, however
    /// that happens, gives it back).
    async fn start_worker(
        &self,
        load: Load,
        deadline: Duration,
    ) -> Result<WorkerProcess, StartError> {
        let place = match self.places.take() {
            Some(p) => p,
            None => {
                self.evict_one_idle().await;
                self.places
                    .take()
                    .ok_or(StartError::Full(self.places.max()))?
            }
        };
        let w = WorkerProcess::spawn(&self.cfg.worker_exe, load, place, deadline)
            .await
            .map_err(StartError::Spawn)?;
        if w.ready.privileges == Privileges::ExecutorUid
            && !self.warned_uid.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "workers keep the executor's uid: it is not root and user namespaces \
                 are refused here (they still hold no capabilities)"
            );
        }
        Ok(w)
    }

    async fn spawn(&self, pool: &Pool) -> Result<WorkerProcess, RunFailure> {
        let deadline = Duration::from_millis(pool.load.load_timeout_ms) + self.cfg.kill_grace * 5;
        match self.start_worker(pool.load.clone(), deadline).await {
            Ok(w) => {
                self.spawned.fetch_add(1, Ordering::Relaxed);
                self.isolated
                    .store(w.ready.filesystem_isolated, Ordering::Relaxed);
                Ok(w)
            }
            Err(StartError::Spawn(SpawnError::Load(e))) => {
                Err(failure(ErrorCode::FunctionError, e.message))
            }
            Err(e) => Err(failure(ErrorCode::Unavailable, e.to_string())),
        }
    }

    fn retire(&self, worker: WorkerProcess) {
        self.retired.fetch_add(1, Ordering::Relaxed);
        worker.release();
    }

    fn forget(&self, mut worker: WorkerProcess) {
        self.retired.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move { worker.kill().await });
    }

    async fn evict_one_idle(&self) {
        let pools: Vec<Arc<Pool>> = lock(&self.pools).values().cloned().collect();
        let oldest = pools
            .iter()
            .filter(|p| !lock(&p.idle).is_empty())
            .min_by_key(|p| *lock(&p.last_used));
        if let Some(p) = oldest {
            let victim = {
                let mut idle = lock(&p.idle);
                if idle.is_empty() {
                    None
                } else {
                    Some(idle.remove(0))
                }
            };
            if let Some(mut w) = victim {
                // Killed and reaped here, so its place is free when this returns.
                self.retired.fetch_add(1, Ordering::Relaxed);
                w.kill().await;
            }
        }
    }

    /// Stops workers idle for longer than the idle timeout and drops unused pools.
    pub fn reap_idle(&self) {
        let now = Instant::now();
        let ttl = self.cfg.idle_timeout;
        let mut pools = lock(&self.pools);
        for pool in pools.values() {
            let expired: Vec<WorkerProcess> = {
                let mut idle = lock(&pool.idle);
                let (old, keep) = idle
                    .drain(..)
                    .partition(|w| now.duration_since(w.last_used) > ttl);
                *idle = keep;
                old
            };
            for w in expired {
                self.forget(w);
            }
        }
        pools.retain(|_, p| {
            Arc::strong_count(p) > 1
                || !lock(&p.idle).is_empty()
                || now.duration_since(*lock(&p.last_used)) <= ttl
        });
    }

    /// Idle workers with their resident memory, plus lifetime counters.
    pub fn snapshot(&self) -> (Vec<WorkerSnapshot>, u64, u64, bool) {
        let pools = lock(&self.pools);
        let mut out = Vec::new();
        for ((function_id, version, _, _), pool) in pools.iter() {
            for w in lock(&pool.idle).iter() {
                out.push(WorkerSnapshot {
                    function_id: function_id.clone(),
                    version: *version,
                    pid: w.pid(),
                    rss_bytes: w.rss_bytes().unwrap_or(0),
                });
            }
        }
        (
            out,
            self.spawned.load(Ordering::Relaxed),
            self.retired.load(Ordering::Relaxed),
            self.isolated.load(Ordering::Relaxed),
        )
    }
}

fn ran(
    result: Result<Box<RawValue>, RunFailure>,
    logs: Vec<String>,
    started: Instant,
) -> JobResult {
    JobResult::Ran {
        result,
        logs,
        duration: started.elapsed(),
        manifest: None,
        worker_replaced: false,
        key_uses: Vec::new(),
        egress: Vec::new(),
    }
}

/// What an invocation used beyond its worker, for its receipt.
#[derive(Default)]
struct Used {
    key_uses: Vec<cloister_types::receipt::ReceiptKeyUse>,
    egress: Vec<cloister_types::receipt::ReceiptEgress>,
}

/// Outbound requests summed by origin, in order of first contact.
fn receipt_egress(
    records: &[cloister_egress::Record],
) -> Vec<cloister_types::receipt::ReceiptEgress> {
    let mut out: Vec<cloister_types::receipt::ReceiptEgress> = Vec::new();
    for r in records {
        // The allowlist entry, never the host the function wrote: receipts travel outside a
        // sealed answer, and a host name can carry anything.
        let origin = r.allowed.clone().unwrap_or_else(|| "refused".to_owned());
        match out.iter_mut().find(|e| e.origin == origin) {
            Some(e) => {
                e.requests += 1;
                e.bytes_sent += r.sent;
                e.bytes_received += r.received;
            }
            None => out.push(cloister_types::receipt::ReceiptEgress {
                origin,
                requests: 1,
                bytes_sent: r.sent,
                bytes_received: r.received,
            }),
        }
    }
    out
}

/// Marks a run whose worker is gone afterwards.
fn replaced_if(gone: bool, mut r: JobResult) -> JobResult {
    if let JobResult::Ran {
        worker_replaced, ..
    } = &mut r
    {
        *worker_replaced = gone;
    }
    r
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many more workers a function may run when its manifest grants capabilities that wait
/// on keyvault (keys): a worker waiting for a signature holds no CPU, so the CPU-sized
/// per-function bound would leave the machine idle while callers queue.
pub const WAITING_WORKER_FACTOR: usize = 4;

/// The most concurrently running workers for function version `m`.
fn workers_for(cfg: &ExecutorConfig, m: &RunManifest) -> usize {
    let n = if m.keys.is_empty() {
        cfg.max_workers_per_function
    } else {
        cfg.max_workers_per_function
            .saturating_mul(WAITING_WORKER_FACTOR)
    };
    // The total is enforced where workers start, with its own clear refusal.
    n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(keys: &[&str]) -> RunManifest {
        RunManifest {
            function_id: "f".into(),
            version: 1,
            name: "f".into(),
            environment: "production".into(),
            runtime: "javascript".into(),
            entrypoint: "handler".into(),
            code_hash: String::new(),
            secrets: Vec::new(),
            limits: Limits {
                timeout_ms: 1000,
                memory_mb: 16,
            },
            digest: String::new(),
            env: Default::default(),
            source_name: None,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            egress: None,
        }
    }

    #[test]
    fn functions_that_wait_on_keyvault_may_run_more_workers() {
        let mut cfg = ExecutorConfig::new("worker".into());
        cfg.max_workers_per_function = 4;
        cfg.max_workers_total = 256;
        assert_eq!(workers_for(&cfg, &manifest(&[])), 4);
        assert_eq!(
            workers_for(&cfg, &manifest(&["k"])),
            4 * WAITING_WORKER_FACTOR
        );
        cfg.max_workers_per_function = 0;
        assert_eq!(workers_for(&cfg, &manifest(&[])), 1);
    }
}
