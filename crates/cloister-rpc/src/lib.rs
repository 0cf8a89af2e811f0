//! Internal RPC contracts (generated from `proto/`) shared by the gateway and executors.

#![allow(missing_docs, clippy::all)]

/// Executor service: validate code, invoke functions, report status.
pub mod executor {
    tonic::include_proto!("cloister.executor.v1");
}

/// Metadata key carrying the internal bearer token between platform roles.
pub const INTERNAL_AUTH_HEADER: &str = "authorization";
