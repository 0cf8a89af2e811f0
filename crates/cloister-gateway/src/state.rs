//! Shared state of the gateway's handlers.

use std::sync::Arc;

use cloister_store::{AuditLog, Store};
use cloister_types::ServerLimits;

use crate::auth::Authenticator;
use crate::executor::Executor;
use crate::functions::FunctionCache;
use crate::keyvault::Keyvault;
use crate::metrics::Metrics;
use crate::ratelimit::{RateConfig, RateLimits};

/// Everything a request handler may use; built once at start.
pub struct AppState {
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// The audit log (deploys, deletions, authentication failures).
    pub audit: Arc<dyn AuditLog>,
    /// The executor that runs functions.
    pub executor: Executor,
    /// keyvault, when configured (secrets, attestation bundle, audit verification).
    pub keyvault: Option<Keyvault>,
    /// Server-wide limits.
    pub limits: ServerLimits,
    /// Token authentication.
    pub auth: Authenticator,
    /// Function metadata cache.
    pub functions: FunctionCache,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Request rate limits.
    pub rate: RateLimits,
    /// Recent invocations per function (memory only).
    pub history: crate::history::History,
}

impl AppState {
    /// Builds the state around a store, its audit log, an executor and (optionally) keyvault.
    pub fn new(
        store: Arc<dyn Store>,
        audit: Arc<dyn AuditLog>,
        executor: Executor,
        keyvault: Option<Keyvault>,
        limits: ServerLimits,
        rate: RateConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            auth: Authenticator::new(store.clone(), audit.clone()),
            functions: FunctionCache::new(store.clone()),
            metrics: Metrics::default(),
            rate: RateLimits::new(rate),
            history: crate::history::History::default(),
            store,
            audit,
            executor,
            keyvault,
            limits,
        })
    }
}

/// Handler state extractor type.
pub type Shared = Arc<AppState>;
