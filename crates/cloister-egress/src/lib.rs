//! Outbound HTTP for functions, made by the executor (inside the TEE), never by a worker
//! (docs/EGRESS.md).
//!
//! Each function gets its own client, built from the egress policy of its owner-signed
//! manifest: its own TLS configuration (the web roots built into this binary plus the roots
//! its manifest lists) and its own connection pool, shared by its invocations and by no other
//! function. Every request is checked against the allowlist by name and, once resolved here,
//! by address; egress-only secrets are injected into headers only where the manifest binds
//! them and redacted from what comes back.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod connect;
mod error;
pub mod inject;
pub mod redact;
mod session;
#[cfg(feature = "test-server")]
pub mod testing;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cloister_types::egress::CheckedEgress;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use error::FetchError;
pub use session::{Record, Session};
pub use tls::TlsConfigError;

/// Limits on outbound requests (per request, per invocation, per function).
#[derive(Debug, Clone, Copy)]
pub struct EgressLimits {
    /// Requests one invocation may make (each redirect followed counts).
    pub max_requests: u32,
    /// Bytes one request may send (headers and body).
    pub max_request_bytes: usize,
    /// Bytes one invocation may send.
    pub max_sent: usize,
    /// Bytes one response may have (headers and body).
    pub max_response_bytes: usize,
    /// Bytes one invocation may receive.
    pub max_received: usize,
    /// Time one request may take, connection included (never past the invocation's
    /// deadline).
    pub request_timeout: Duration,
    /// Time to resolve, connect and complete TLS.
    pub connect_timeout: Duration,
    /// Requests of one function in flight at once, across its invocations.
    pub max_in_flight: usize,
    /// Redirects followed per request.
    pub max_redirects: u8,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Idle connections kept per origin.
    pub max_idle_per_origin: usize,
}

impl Default for EgressLimits {
    fn default() -> Self {
        Self {
            max_requests: 50,
            max_request_bytes: 1 << 20,
            max_sent: 4 << 20,
            max_response_bytes: 2 << 20,
            max_received: 8 << 20,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 16,
            max_redirects: 5,
            idle_timeout: Duration::from_secs(60),
            max_idle_per_origin: 4,
        }
    }
}

/// Most functions whose clients are kept at once; past it the least recently used idle one
/// is dropped.
const MAX_FUNCTIONS: usize = 256;

/// The executor's outbound HTTP: one client per function version (its manifest's digest).
pub struct Egress {
    limits: EgressLimits,
    functions: Mutex<HashMap<String, (Arc<FunctionEgress>, std::time::Instant)>>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// Outbound HTTP under `limits`.
    pub fn new(limits: EgressLimits) -> Self {
        Self {
            limits,
            functions: Mutex::new(HashMap::new()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &EgressLimits {
        &self.limits
    }

    /// The client of the function version whose manifest has digest `digest` and egress
    /// policy `policy` (built on first use, outside the lock).
    pub fn function(
        &self,
        digest: &str,
        policy: &Arc<CheckedEgress>,
    ) -> Result<Arc<FunctionEgress>, TlsConfigError> {
        let now = std::time::Instant::now();
        if let Some((f, used)) = self.lock().get_mut(digest) {
            *used = now;
            return Ok(f.clone());
        }
        let built = Arc::new(FunctionEgress::new(policy.clone(), self.limits)?);
        let mut fns = self.lock();
        if let Some((f, used)) = fns.get_mut(digest) {
            *used = now;
            return Ok(f.clone());
        }
        if fns.len() >= MAX_FUNCTIONS {
            // The least recently used client no invocation holds goes (with its pool); if
            // every one is in use, the map grows past the mark until some are released.
            let idle = fns
                .iter()
                .filter(|(_, (f, _))| Arc::strong_count(f) == 1)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = idle {
                fns.remove(&k);
            }
        }
        fns.insert(digest.to_owned(), (built.clone(), now));
        Ok(built)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<FunctionEgress>, std::time::Instant)>> {
        self.functions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One function's client: its policy, its pool, its bound on requests in flight.
pub struct FunctionEgress {
    policy: Arc<CheckedEgress>,
    client: Client<connect::Connector, Full<Bytes>>,
    slots: tokio::sync::Semaphore,
    limits: EgressLimits,
}

impl FunctionEgress {
    /// A client for `policy`.
    pub fn new(policy: Arc<CheckedEgress>, limits: EgressLimits) -> Result<Self, TlsConfigError> {
        let roots = Arc::new(tls::Roots::new(policy.clone())?);
        let connector = connect::Connector::new(policy.clone(), roots, limits.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(limits.idle_timeout)
            .pool_max_idle_per_host(limits.max_idle_per_origin)
            .retry_canceled_requests(false)
            .set_host(true)
            .build(connector);
        Ok(Self {
            policy,
            client,
            slots: tokio::sync::Semaphore::new(limits.max_in_flight),
            limits,
        })
    }

    /// The policy this client enforces.
    pub fn policy(&self) -> &CheckedEgress {
        &self.policy
    }
}
