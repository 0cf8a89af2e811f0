//! Shared state of the gateway's handlers.

use std::sync::Arc;

use cloister_store::Store;
use cloister_types::ServerLimits;

use crate::auth::Authenticator;
use crate::executor::Executor;
use crate::functions::FunctionCache;
use crate::metrics::Metrics;

/// Everything a request handler may use; built once at start.
pub struct AppState {
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// The executor that runs functions.
    pub executor: Executor,
    /// Server-wide limits.
    pub limits: ServerLimits,
    /// Token authentication.
    pub auth: Authenticator,
    /// Function metadata cache.
    pub functions: FunctionCache,
    /// Prometheus metrics.
    pub metrics: Metrics,
}

impl AppState {
    /// Builds the state around a store and an executor handle.
    pub fn new(store: Arc<dyn Store>, executor: Executor, limits: ServerLimits) -> Arc<Self> {
        Arc::new(Self {
            auth: Authenticator::new(store.clone()),
            functions: FunctionCache::new(store.clone()),
            metrics: Metrics::default(),
            store,
            executor,
            limits,
        })
    }
}

/// Handler state extractor type.
pub type Shared = Arc<AppState>;
