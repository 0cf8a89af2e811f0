//! Grants from keyvault: for (function, version, hash of the code loaded) keyvault returns
//! the owner-signed manifest and the declared secret values over the mutually attested
//! channel. Grants are cached in memory for a short TTL, keyed by exactly that triple (so
//! other code sent under a function's id never meets its cached values), and refetched as
//! soon as the gateway reports a newer change counter (epoch) for the namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister_channel::{AttestedStream, ChannelConnector, ChannelError};
use cloister_rpc::keyvault::{ReleaseRequest, ReleaseResponse, release_response};
use prost::Message;
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use cloister_types::{ErrorCode, Limits};

use crate::secrets::{
    Grant, GrantFuture, GrantRequest, RunManifest, SecretError, SecretSource, SecretValues,
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
    cache: Mutex<HashMap<CacheKey, Cached>>,
    ttl: Duration,
    fetches: std::sync::atomic::AtomicU64,
}

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
            cache: Mutex::new(HashMap::new()),
            ttl,
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
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
            let Some(conn) = guard.as_mut() else { continue };
            match conn.call(request).await {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    *guard = None;
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

    async fn fetch_remote(&self, req: GrantRequest<'_>) -> Result<(u64, Grant), SecretError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rr = ReleaseRequest {
            function_id: req.function_id.to_owned(),
            version: req.version,
            code_hash: req.loaded_code_hash.to_owned(),
            execution_id: req.execution_id.to_owned(),
        };
        let reply = Zeroizing::new(self.call(&rr.encode_to_vec()).await?);
        let resp = ReleaseResponse::decode(reply.as_slice())
            .map_err(|e| SecretError::Unavailable(format!("malformed keyvault reply: {e}")))?;
        match resp.outcome {
            Some(release_response::Outcome::Released(r)) => {
                let m = r.manifest.ok_or_else(|| {
                    SecretError::Unavailable("keyvault released no manifest".into())
                })?;
                // keyvault checked these; a reply for anything else is a protocol error.
                if m.function_id != req.function_id
                    || m.version != req.version
                    || m.code_hash != req.loaded_code_hash
                {
                    return Err(SecretError::Unavailable(
                        "keyvault answered for another function version".into(),
                    ));
                }
                let mut values = SecretValues::new();
                for (name, bytes) in r.values {
                    let text = String::from_utf8(bytes).map_err(|_| {
                        SecretError::Unavailable(format!("secret `{name}` is not UTF-8"))
                    })?;
                    values.insert(name, Zeroizing::new(text));
                }
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
                };
                Ok((
                    r.epoch,
                    Grant {
                        manifest: Arc::new(manifest),
                        secrets: Arc::new(values),
                    },
                ))
            }
            Some(release_response::Outcome::Error(e)) if e.code == "secret_missing" => {
                Err(SecretError::Missing(e.secret))
            }
            Some(release_response::Outcome::Error(e)) => match ErrorCode::parse(&e.code) {
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
                    return Ok(c.grant.clone());
                }
            }
            let (fresh_epoch, grant) = self.fetch_remote(req).await?;
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
