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
