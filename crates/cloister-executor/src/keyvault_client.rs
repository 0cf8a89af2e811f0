//! Grants from keyvault: for (function, version, hash of the code loaded) keyvault returns
//! the owner-signed manifest and the declared secret values over the mutually attested
//! channel. Grants are cached in memory for a short TTL, keyed by exactly that triple (so
//! other code sent under a function's id never meets its cached values), and refetched as
//! soon as the gateway reports a newer change counter (epoch) for the namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister_channel::{AttestedStream, ChannelConnector, ChannelError, Multiplexed};
use cloister_rpc::keyvault::{
    ExecutorMessage, KeyvaultReply, ReadBatch, ReadRecord, ReleaseRequest, SignRequest,
    executor_message, keyvault_reply, release_response,
};
use prost::Message;
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use cloister_types::{ErrorCode, Limits};

use crate::secrets::{
    Grant, GrantFuture, GrantRequest, KeyAnswer, KeyFuture, KeyRequest, RunManifest, SecretError,
    SecretSource, SecretValues,
};

/// Default time a fetched value may be served from memory.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

type Conn = AttestedStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// (function id, version, hash of the loaded code).
type CacheKey = (String, u32, String);

struct Cached {
    epoch: u64,
    at: Instant,
    grant: Grant,
}

/// Fetches secrets from keyvault over an attested channel (reconnecting and re-attesting
/// after keyvault restarts).
pub struct KeyvaultSecrets {
    addr: String,
    connector: ChannelConnector,
    conn: tokio::sync::Mutex<Option<Conn>>,
    signing: SignChannel,
    cache: Mutex<HashMap<CacheKey, Cached>>,
    ttl: Duration,
    fetches: std::sync::atomic::AtomicU64,
    reads: Mutex<std::collections::VecDeque<ReadRecord>>,
    read_seq: std::sync::atomic::AtomicU64,
    boot_id: String,
}

/// Signing requests in flight at once on the signing channel (keyvault serves them
/// concurrently and commits their audit entries together); later ones queue.
pub const SIGN_IN_FLIGHT: usize = 128;

/// How long keyvault may leave a signing request unanswered before the channel is judged
/// broken (and a new one attested): far above a durable commit, below any sane deadline.
pub const SIGN_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The channel for `context.sign`: signatures are many and small, so they get a channel of
/// their own, multiplexed, instead of queueing behind one another and behind releases on the
/// main channel (which alone carries read records, so keyvault's record of this executor's
/// reads stays on one connection). Attested on first use and again after it fails.
#[derive(Default)]
struct SignChannel {
    current: tokio::sync::Mutex<Option<Multiplexed>>,
}

/// How often buffered read records are sent to keyvault (the most a crash can lose).
pub const READ_FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Reads sent in one batch at most.
const READS_PER_BATCH: usize = 2048;
/// Reads kept while keyvault is unreachable; beyond it the oldest are dropped (and the gap in
/// `read_seq` shows it in the audit log).
const MAX_BUFFERED_READS: usize = 200_000;

impl std::fmt::Debug for KeyvaultSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyvaultSecrets")
            .field("addr", &self.addr)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl KeyvaultSecrets {
    /// A source talking to keyvault's channel listener at `addr` (`host:port`).
    pub fn new(addr: String, connector: ChannelConnector, ttl: Duration) -> Self {
        Self {
            addr,
            connector,
            conn: tokio::sync::Mutex::new(None),
            signing: SignChannel::default(),
            cache: Mutex::new(HashMap::new()),
            ttl,
            fetches: std::sync::atomic::AtomicU64::new(0),
            reads: Mutex::new(std::collections::VecDeque::new()),
            read_seq: std::sync::atomic::AtomicU64::new(0),
            boot_id: cloister_crypto::random_bytes::<16>()
                .map(hex::encode)
                .unwrap_or_else(|_| format!("pid-{}", std::process::id())),
        }
    }

    /// Buffers the record of one invocation reading its secrets.
    fn record_read(&self, m: &RunManifest, execution_id: &str, cached: bool) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let read_seq = self
            .read_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let rec = ReadRecord {
            function_id: m.function_id.clone(),
            version: m.version,
            execution_id: execution_id.to_owned(),
            names: m.secrets.clone(),
            at_ms,
            read_seq,
            cached,
        };
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        if reads.len() >= MAX_BUFFERED_READS {
            reads.pop_front();
            tracing::error!("keyvault unreachable: dropped the oldest unrecorded secret read");
        }
        reads.push_back(rec);
    }

    /// Sends buffered read records to keyvault (all of them, in batches); `last` marks a
    /// clean shutdown. Records that could not be sent stay buffered.
    pub async fn flush_reads(&self, last: bool) -> Result<u64, SecretError> {
        let mut sent = 0;
        loop {
            let batch: Vec<ReadRecord> = {
                let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
                let n = reads.len().min(READS_PER_BATCH);
                reads.drain(..n).collect()
            };
            let done = batch.len() < READS_PER_BATCH;
            if batch.is_empty() && !last {
                return Ok(sent);
            }
            let msg = ExecutorMessage {
                body: Some(executor_message::Body::Reads(ReadBatch {
                    boot_id: self.boot_id.clone(),
                    reads: batch.clone(),
                    r#final: last && done,
                })),
            };
            let reply = self.call(&msg.encode_to_vec()).await;
            let acked = match reply.map(|r| KeyvaultReply::decode(r.as_slice())) {
                Ok(Ok(KeyvaultReply {
                    body: Some(keyvault_reply::Body::Ack(a)),
                })) => Ok(a.recorded),
                // Named by kind only: a misrouted reply may hold secret values.
                Ok(Ok(other)) => Err(SecretError::Unavailable(format!(
                    "keyvault did not record reads (it answered {})",
                    reply_kind(&other)
                ))),
                Ok(Err(e)) => Err(SecretError::Unavailable(format!(
                    "malformed keyvault reply: {e}"
                ))),
                Err(e) => Err(e),
            };
            match acked {
                Ok(n) => sent += n,
                Err(e) => {
                    let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
                    for r in batch.into_iter().rev() {
                        reads.push_front(r);
                    }
                    return Err(e);
                }
            }
            if done {
                return Ok(sent);
            }
        }
    }

    /// Sends read records every [`READ_FLUSH_INTERVAL`] until the task is aborted.
    pub fn spawn_read_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(READ_FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.flush_reads(false).await {
                    tracing::warn!(error = %e, "secret reads not yet recorded by keyvault");
                }
            }
        })
    }

    /// How many times values were fetched from keyvault (cache misses).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn connect(&self) -> Result<Conn, ChannelError> {
        let tcp = TcpStream::connect(&self.addr).await?;
        let _ = tcp.set_nodelay(true);
        let ch = self.connector.connect(tcp).await?;
        tracing::info!(addr = %self.addr, "attested channel to keyvault established");
        Ok(ch)
    }

    async fn call(&self, request: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut guard = self.conn.lock().await;
        // One retry on a fresh connection: keyvault may have restarted since the last call.
        for attempt in 0..2 {
            if guard.is_none() {
                match self.connect().await {
                    Ok(c) => *guard = Some(c),
                    Err(e) => {
                        return Err(SecretError::Unavailable(format!(
                            "cannot reach keyvault at {}: {e}",
                            self.addr
                        )));
                    }
                }
            }
            // The connection is taken out for the exchange and put back only once its reply
            // is read: a call dropped half-way (its invocation's deadline, a client gone)
            // drops the connection with it, so no later request can read this one's reply.
            let Some(mut conn) = guard.take() else {
                continue;
            };
            match conn.call(request).await {
                Ok(reply) => {
                    *guard = Some(conn);
                    return Ok(reply);
                }
                Err(e) => {
                    if attempt == 1 {
                        return Err(SecretError::Unavailable(format!("keyvault channel: {e}")));
                    }
                    tracing::info!(error = %e, "keyvault channel failed; reconnecting");
                }
            }
        }
        Err(SecretError::Unavailable(
            "keyvault channel unavailable".into(),
        ))
    }

    /// The signing channel, attested now if there is none or the last one failed.
    async fn signing_channel(&self) -> Result<Multiplexed, SecretError> {
        let mut current = self.signing.current.lock().await;
        if let Some(ch) = current.as_ref().filter(|c| !c.is_closed()) {
            return Ok(ch.clone());
        }
        let ch = self.connect().await.map_err(|e| {
            SecretError::Unavailable(format!("cannot reach keyvault at {}: {e}", self.addr))
        })?;
        let ch = Multiplexed::spawn(ch, SIGN_IN_FLIGHT, SIGN_REPLY_TIMEOUT);
        *current = Some(ch.clone());
        Ok(ch)
    }

    /// One exchange on the signing channel; `answer` reads the reply, and a reply it does not
    /// accept drops that channel (the next exchange attests a fresh one). A call dropped
    /// half-way abandons its own exchange only.
    async fn call_signing<T>(
        &self,
        request: &[u8],
        answer: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<T, SecretError> {
        for attempt in 0..2 {
            let ch = self.signing_channel().await?;
            match ch.call(request).await {
                Ok(reply) => {
                    return answer(&reply).ok_or_else(|| {
                        tracing::error!(
                            "keyvault's reply does not answer the signing request; channel dropped"
                        );
                        ch.close();
                        SecretError::Unavailable(
                            "unexpected keyvault reply to a signing request".into(),
                        )
                    });
                }
                // The channel was closed before this request went out (keyvault restarted):
                // one retry on a fresh one. A request in flight when the channel failed is
                // not retried (keyvault may have signed it).
                Err(ChannelError::Closed) if attempt == 0 => {
                    tracing::info!("keyvault signing channel closed; reconnecting");
                }
                Err(e) => return Err(SecretError::Unavailable(format!("keyvault channel: {e}"))),
            }
        }
        Err(SecretError::Unavailable(
            "keyvault channel unavailable".into(),
        ))
    }

    /// Drops the channel after a reply that does not answer the request sent (the next call
    /// attests a fresh one).
    async fn reset(&self, why: &str) -> SecretError {
        *self.conn.lock().await = None;
        tracing::error!(
            why,
            "keyvault's reply does not answer the request; channel dropped"
        );
        SecretError::Unavailable(format!("unexpected keyvault reply: {why}"))
    }

    /// The fleet keys valid now, from keyvault, each checked (see [`crate::fleet`]).
    pub async fn fleet_keys(&self) -> Result<Vec<crate::fleet::FleetKeyPair>, SecretError> {
        let msg = ExecutorMessage {
            body: Some(executor_message::Body::Fleet(
                cloister_rpc::keyvault::FleetKeysRequest {},
            )),
        };
        let reply = Zeroizing::new(self.call(&msg.encode_to_vec()).await?);
        let mut keys = match KeyvaultReply::decode(reply.as_slice()).map(|r| r.body) {
            Ok(Some(keyvault_reply::Body::Fleet(f))) => f.keys,
            Ok(Some(keyvault_reply::Body::Error(e))) => {
                return Err(SecretError::Refused {
                    code: cloister_types::ErrorCode::parse(&e.code)
                        .unwrap_or(cloister_types::ErrorCode::Internal),
                    message: format!("keyvault refused the fleet keys: {}", e.message),
                });
            }
            _ => return Err(self.reset("not a fleet-keys answer").await),
        };
        let checked = keys
            .iter()
            .map(crate::fleet::FleetKeyPair::from_wire)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SecretError::Unavailable(e.to_string()));
        for k in &mut keys {
            zeroize::Zeroize::zeroize(&mut k.private_key);
        }
        checked
    }

    async fn fetch_remote(&self, req: GrantRequest<'_>) -> Result<(u64, Grant), SecretError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rr = ReleaseRequest {
            function_id: req.function_id.to_owned(),
            version: req.version,
            code_hash: req.loaded_code_hash.to_owned(),
            execution_id: req.execution_id.to_owned(),
        };
        let msg = ExecutorMessage {
            body: Some(executor_message::Body::Release(rr)),
        };
        let reply = Zeroizing::new(self.call(&msg.encode_to_vec()).await?);
        let resp = match KeyvaultReply::decode(reply.as_slice()).map(|r| r.body) {
            Ok(Some(keyvault_reply::Body::Release(r))) => r,
            Ok(Some(keyvault_reply::Body::Error(e))) => {
                return Err(SecretError::Unavailable(format!(
                    "keyvault refused: {} ({})",
                    e.message, e.code
                )));
            }
            Ok(_) => return Err(self.reset("not a release answer").await),
            Err(e) => {
                return Err(SecretError::Unavailable(format!(
                    "malformed keyvault reply: {e}"
                )));
            }
        };
        match resp.outcome {
            Some(release_response::Outcome::Released(mut r)) => {
                let m = r.manifest.ok_or_else(|| {
                    SecretError::Unavailable("keyvault released no manifest".into())
                })?;
                // keyvault checked these; a reply for anything else is a protocol error.
                if m.function_id != req.function_id
                    || m.version != req.version
                    || m.code_hash != req.loaded_code_hash
                {
                    return Err(self.reset("a release for another function version").await);
                }
                let mut values = SecretValues::new();
                for (name, bytes) in std::mem::take(&mut r.values) {
                    values.insert(name, Zeroizing::new(bytes));
                }
                let mut egress_values = SecretValues::new();
                for (name, bytes) in std::mem::take(&mut r.egress_values) {
                    egress_values.insert(name, Zeroizing::new(bytes));
                }
                let egress = egress_policy(&m.egress_json, &m.secrets)?;
                let manifest = RunManifest {
                    function_id: m.function_id,
                    version: m.version,
                    name: m.name,
                    environment: m.environment,
                    runtime: m.runtime,
                    entrypoint: m.entrypoint,
                    code_hash: m.code_hash,
                    secrets: m.secrets,
                    limits: Limits {
                        timeout_ms: m.timeout_ms,
                        memory_mb: m.memory_mb,
                    },
                    digest: m.digest,
                    env: m.env.into_iter().collect(),
                    source_name: Some(m.source_name).filter(|n| !n.is_empty()),
                    keys: m.keys,
                    egress,
                };
                let code_key = if r.code_key.is_empty() {
                    None
                } else {
                    let key = cloister_crypto::SecretKey32::from_slice(&r.code_key)
                        .map_err(|_| SecretError::Unavailable("malformed code key".into()));
                    zeroize::Zeroize::zeroize(&mut r.code_key);
                    Some(Arc::new(key?))
                };
                Ok((
                    r.epoch,
                    Grant {
                        manifest: Arc::new(manifest),
                        secrets: Arc::new(values),
                        egress_secrets: Arc::new(egress_values),
                        code_key,
                    },
                ))
            }
            Some(release_response::Outcome::Error(e)) => match ErrorCode::parse(&e.code) {
                // keyvault's message names the secret and the environment.
                Some(ErrorCode::SecretMissing) if !e.message.is_empty() => {
                    Err(SecretError::Refused {
                        code: ErrorCode::SecretMissing,
                        message: e.message,
                    })
                }
                Some(ErrorCode::SecretMissing) => Err(SecretError::Missing(e.secret)),
                Some(code) if code != ErrorCode::Unavailable => Err(SecretError::Refused {
                    code,
                    message: e.message,
                }),
                _ => Err(SecretError::Unavailable(format!(
                    "keyvault refused: {} ({})",
                    e.message, e.code
                ))),
            },
            None => Err(SecretError::Unavailable("empty keyvault reply".into())),
        }
    }
}

impl SecretSource for KeyvaultSecrets {
    fn key<'a>(&'a self, req: KeyRequest) -> KeyFuture<'a> {
        Box::pin(async move {
            let msg = ExecutorMessage {
                body: Some(executor_message::Body::Sign(SignRequest {
                    function_id: req.function_id,
                    version: req.version,
                    code_hash: req.code_hash,
                    execution_id: req.execution_id,
                    key: req.key,
                    message: req.message,
                    hash: req.hash,
                    public_key_only: req.public_key_only,
                })),
            };
            let asked_public = matches!(
                &msg.body,
                Some(executor_message::Body::Sign(r)) if r.public_key_only
            );
            // `None`: not an answer to this request (the channel is dropped).
            let answer = |reply: &[u8]| -> Option<Result<KeyAnswer, SecretError>> {
                match KeyvaultReply::decode(reply).map(|r| r.body) {
                    Ok(Some(keyvault_reply::Body::Signed(s)))
                        if s.signature.is_empty() == asked_public =>
                    {
                        Some(Ok(KeyAnswer {
                            algorithm: s.algorithm,
                            key_version: s.key_version,
                            signature: s.signature,
                            public_key: s.public_key,
                            recovery_id: s.recovery_id.and_then(|r| u8::try_from(r).ok()),
                        }))
                    }
                    Ok(Some(keyvault_reply::Body::Error(e))) => Some(Err(SecretError::Refused {
                        code: ErrorCode::parse(&e.code).unwrap_or(ErrorCode::Internal),
                        message: e.message,
                    })),
                    _ => None,
                }
            };
            self.call_signing(&msg.encode_to_vec(), answer).await?
        })
    }

    fn grant<'a>(&'a self, req: GrantRequest<'a>) -> GrantFuture<'a> {
        Box::pin(async move {
            let key = (
                req.function_id.to_owned(),
                req.version,
                req.loaded_code_hash.to_owned(),
            );
            {
                let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(c) = cache.get(&key)
                    && c.epoch >= req.epoch
                    && c.at.elapsed() < self.ttl
                {
                    let grant = c.grant.clone();
                    drop(cache);
                    if !grant.manifest.secrets.is_empty() {
                        self.record_read(&grant.manifest, req.execution_id, true);
                    }
                    return Ok(grant);
                }
            }
            let (fresh_epoch, grant) = self.fetch_remote(req).await?;
            if !grant.manifest.secrets.is_empty() {
                self.record_read(&grant.manifest, req.execution_id, false);
            }
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.retain(|_, c| c.at.elapsed() < self.ttl);
            cache.insert(
                key,
                Cached {
                    epoch: fresh_epoch,
                    at: Instant::now(),
                    grant: grant.clone(),
                },
            );
            Ok(grant)
        })
    }
}

/// The egress policy keyvault released with a manifest, checked again here (keyvault checked
/// it at registration): anything malformed refuses the run rather than granting a network.
fn egress_policy(
    json: &str,
    secrets: &[String],
) -> Result<Option<Arc<cloister_types::egress::CheckedEgress>>, SecretError> {
    if json.is_empty() {
        return Ok(None);
    }
    let malformed = |e: String| SecretError::Unavailable(format!("malformed egress policy: {e}"));
    let policy: cloister_types::egress::Egress =
        serde_json::from_str(json).map_err(|e| malformed(e.to_string()))?;
    let declared = cloister_types::SecretRef::parse_declared_within(secrets, usize::MAX)
        .map_err(|e| malformed(e.to_string()))?;
    let names: Vec<&str> = declared.iter().map(|r| r.name()).collect();
    let checked = policy.check(&names).map_err(|e| malformed(e.to_string()))?;
    Ok(Some(Arc::new(checked)))
}

/// The kind of a keyvault reply, for messages (never its content).
fn reply_kind(r: &KeyvaultReply) -> &'static str {
    match &r.body {
        None => "nothing",
        Some(keyvault_reply::Body::Ack(_)) => "an acknowledgement",
        Some(keyvault_reply::Body::Error(_)) => "an error",
        Some(keyvault_reply::Body::Release(_)) => "a release",
        Some(_) => "another kind of reply",
    }
}
