//! Shared state of the gateway's handlers.

use std::sync::Arc;

use cloister_store::Store;
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
    /// The audit log, kept by keyvault (deletions, token changes, authentication failures).
    pub audit: Arc<crate::audit_relay::AuditRelay>,
    /// Secrets epochs, following keyvault.
    pub epochs: Arc<crate::epochs::Epochs>,
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
    /// Builds the state around a store, an executor and (optionally) keyvault, which keeps
    /// the audit log and the secrets epochs.
    pub fn new(
        store: Arc<dyn Store>,
        executor: Executor,
        keyvault: Option<Keyvault>,
        limits: ServerLimits,
        rate: RateConfig,
    ) -> Arc<Self> {
        let audit = Arc::new(crate::audit_relay::AuditRelay::new(keyvault.clone()));
        let epochs = crate::epochs::Epochs::new(keyvault.clone());
        Arc::new(Self {
            auth: Authenticator::new(store.clone(), audit.clone()),
            epochs,
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
