//! The gateway role (untrusted): the public HTTP API of `shared/API.md`.
//!
//! It authenticates callers, validates input once at the edge, keeps the function registry
//! in a [`cloister_store::Store`], and routes invocations to an executor. It never runs
//! function code and never sees secret values: secret writes arrive sealed to keyvault's
//! attested key and are forwarded as ciphertext; it does not link keyvault or executor code,
//! only their RPC contracts.

pub mod audit;
pub mod audit_relay;
pub mod auth;
pub mod body;
pub mod bootstrap;
pub mod deploy;
pub mod epochs;
pub mod error;
pub mod executor;
pub mod executor_link;
pub mod functions;
pub mod history;
pub mod invoke;
pub mod keys;
pub mod keyvault;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod query;
pub mod ratelimit;
pub mod relay;
pub mod secrets;
pub mod state;
pub mod tokens;

use std::future::Future;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use state::{AppState, Shared};

/// The complete HTTP API.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/v1/status", get(ops::status))
        .route("/v1/functions", post(deploy::deploy).get(deploy::list))
        .route(
            "/v1/functions/{name}",
            get(deploy::show).delete(deploy::delete),
        )
        .route("/v1/functions/{name}/invoke", post(invoke::invoke))
        .route("/v1/functions/{name}/manifest", get(relay::manifest))
        .route("/v1/functions/{name}/invocations", get(deploy::invocations))
        .route("/v1/functions/{name}/versions", get(deploy::versions))
        .route(
            "/v1/functions/{name}/current",
            axum::routing::put(deploy::set_current),
        )
        .route("/v1/attestation", get(secrets::attestation))
        .route("/v1/secrets", get(secrets::list))
        .route(
            "/v1/secrets/{*path}",
            axum::routing::put(secrets::put)
                .post(secrets::post)
                .get(secrets::versions)
                .delete(secrets::delete),
        )
        .route("/v1/keyvault/rotate-dek", post(secrets::rotate_dek))
        .route("/v1/keyvault/rotate-mek", post(secrets::rotate_mek))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/identities", post(relay::grant))
        .route(
            "/v1/registry",
            post(relay::change_registry).get(relay::registry),
        )
        .route("/v1/activations", post(relay::activate))
        .route("/v1/keys", post(keys::write))
        .route("/v1/keys/use", post(keys::use_key))
        .route("/v1/keys/export", post(keys::export))
        .route("/v1/functions/{name}/keys", get(keys::list))
        .route(
            "/v1/functions/{name}/keys/{key}/versions",
            get(keys::versions),
        )
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ratelimit::limit,
        ))
        .with_state(state)
}

/// Serves the API on `listener` with the connection limits of `edge` until `shutdown`
/// resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: Shared,
    edge: listener::EdgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::serve(listener, state, edge, shutdown).await
}
