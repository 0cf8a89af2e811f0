//! Internal RPC contracts (generated from `proto/`) shared by the gateway and executors.

#![allow(missing_docs, clippy::all)]

/// Executor service: validate code, invoke functions, report status.
pub mod executor {
    tonic::include_proto!("cloister.executor.v1");
}

/// keyvault service (gateway → keyvault) and the secret release messages (executor →
/// keyvault over the attested channel).
pub mod keyvault {
    tonic::include_proto!("cloister.keyvault.v1");
}

/// Metadata key carrying a stable Cloister error code on a failed internal call.
pub const ERROR_CODE_HEADER: &str = "x-cloister-code";

/// Metadata key carrying the internal bearer token between platform roles.
pub const INTERNAL_AUTH_HEADER: &str = "authorization";

use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// Checks the internal bearer token on every request, in constant time.
#[derive(Clone)]
pub struct InternalAuth {
    expected: Arc<Vec<u8>>,
}

impl InternalAuth {
    /// Accepts `Bearer <token>`.
    pub fn new(token: &str) -> Self {
        Self {
            expected: Arc::new(format!("Bearer {token}").into_bytes()),
        }
    }

    /// Interceptor body.
    pub fn check(&self, req: Request<()>) -> Result<Request<()>, Status> {
        let given = req
            .metadata()
            .get(INTERNAL_AUTH_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if bool::from(given.ct_eq(self.expected.as_slice())) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("internal token required"))
        }
    }
}
