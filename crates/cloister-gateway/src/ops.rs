//! Operational endpoints: health, metrics, the OpenAPI document, and fallbacks.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use cloister_types::ErrorCode;

use crate::error::{HttpError, HttpResult};
use crate::state::Shared;

/// `GET /healthz`.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /metrics` (any valid token, metrics tokens included; the per-function series for
/// admin and metrics tokens only).
pub async fn metrics(State(s): State<Shared>, headers: HeaderMap) -> HttpResult<Response> {
    let caller = s.auth.authenticate_any(&headers).await?;
    let _one_scrape_at_a_time = s.metrics.scrape.lock().await;
    match s.executor.status().await {
        Ok(status) => s.metrics.set_executor_status(&status),
        Err(e) => tracing::warn!(error = ?e.0.message, "metrics: executor status unavailable"),
    }
    // Per-function series name every tenant's functions: for admins and metrics tokens.
    let per_function = matches!(
        caller.role,
        cloister_types::Role::Admin | cloister_types::Role::Metrics
    );
    let mut resp = s.metrics.render(per_function).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(resp)
}

/// `GET /v1/status` (any valid token): the gateway's release and its view of the executor.
pub async fn status(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> HttpResult<Json<cloister_types::wire::PlatformStatus>> {
    s.auth.authenticate(&headers).await?;
    let (attested_link, link_measurement) = s.executor.link_state();
    let executor = match s.executor.status().await {
        Ok(st) => cloister_types::wire::ExecutorStatus {
            reachable: true,
            error: None,
            workers: st.workers.len() as u64,
            workers_spawned: st.spawned_total,
            workers_retired: st.retired_total,
            filesystem_isolated: st.filesystem_isolated,
            attested_link,
            link_measurement,
        },
        Err(e) => cloister_types::wire::ExecutorStatus {
            reachable: false,
            error: Some(e.0.message.clone()),
            workers: 0,
            workers_spawned: 0,
            workers_retired: 0,
            filesystem_isolated: false,
            attested_link,
            link_measurement,
        },
    };
    Ok(Json(cloister_types::wire::PlatformStatus {
        gateway_version: env!("CARGO_PKG_VERSION").to_owned(),
        executor,
        keyvault_configured: s.keyvault.is_some(),
    }))
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> Response {
    let mut resp = crate::openapi::DOCUMENT.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Unknown route.
pub async fn not_found() -> HttpError {
    HttpError::new(
        ErrorCode::NotFound,
        "no such endpoint; see /v1/openapi.json",
    )
}

/// Known route, wrong method.
pub async fn method_not_allowed() -> HttpError {
    HttpError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not accept that HTTP method",
    )
}
