//! `POST /v1/functions/{name}/invoke`: route one invocation to the executor.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use cloister_rpc::executor::{FunctionRef, InvokeRequest as RpcInvoke, invoke_response::Outcome};
use cloister_store::VersionRecord;
use cloister_types::wire::{InvokeRequest, InvokeResponse};
use cloister_types::{ErrorCode, Role};
use serde_json::value::RawValue;

use crate::body;
use crate::deploy::path_arg;
use crate::error::{HttpError, HttpResult};
use crate::functions::not_found;
use crate::state::Shared;

/// Time allowed beyond a function's own deadline for queueing and starting a worker.
const DISPATCH_SLACK: Duration = Duration::from_secs(10);

/// `POST /v1/functions/{name}/invoke`.
pub async fn invoke(
    State(s): State<Shared>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> HttpResult<Json<InvokeResponse>> {
    let started = Instant::now();
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Invoker, "invoke functions")?;
    let result = invoke_inner(&s, &headers, name, body).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.0.code.as_str(),
    };
    s.metrics
        .invocation(outcome, started.elapsed().as_secs_f64());
    result.map(Json)
}

fn function_ref(f: &VersionRecord, secrets_epoch: u64) -> FunctionRef {
    FunctionRef {
        function_id: f.function_id.clone(),
        version: f.version,
        code_hash: f.code_hash.clone(),
        secrets_epoch,
    }
}

/// The executor's failure code, parsed once: it is the public code's wire string.
fn failure_code(code: &str) -> ErrorCode {
    ErrorCode::parse(code).unwrap_or_else(|| {
        tracing::error!(code, "the executor sent an unknown error code");
        ErrorCode::Internal
    })
}

async fn invoke_inner(
    s: &Shared,
    headers: &HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> HttpResult<InvokeResponse> {
    let name = path_arg(name)?;
    let limit = s.limits.max_input_bytes.saturating_add(16 * 1024);
    let bytes = body::read_limited(headers, body, limit).await?;
    let req: InvokeRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        InvokeRequest {
            params: None,
            version: None,
        }
    } else {
        body::off_runtime(bytes.len(), move || body::parse_json(&bytes)).await?
    };
    if req.version == Some(0) {
        return Err(HttpError::new(
            ErrorCode::InvalidRequest,
            "version numbers start at 1",
        ));
    }
    let params = req
        .params
        .map(|p| p.get().to_owned())
        .unwrap_or_else(|| "null".to_owned());
    if params.len() > s.limits.max_input_bytes {
        return Err(HttpError::new(
            ErrorCode::PayloadTooLarge,
            format!("params are {} bytes; the maximum is {}", params.len(), s.limits.max_input_bytes),
        )
        .details(serde_json::json!({ "limitBytes": s.limits.max_input_bytes, "sizeBytes": params.len() })));
    }
    let f = s.functions.resolve(&name, req.version).await?;
    // The namespace's change counter also moves on (de)activation and redeploys, so cached
    // grants of every function, with or without secrets, are refreshed at once.
    let secrets_epoch = s.store.secrets_epoch(&f.function_id).await?;
    let execution_id = uuid::Uuid::new_v4().to_string();
    let timeout = Duration::from_millis(f.limits.timeout_ms) + DISPATCH_SLACK;
    let mut rpc = RpcInvoke {
        function: Some(function_ref(&f, secrets_epoch)),
        params_json: params,
        code: None,
        execution_id: execution_id.clone(),
        link_id: Vec::new(),
    };
    let mut resp = s.executor.invoke(rpc.clone(), timeout).await?;
    if matches!(resp.outcome, Some(Outcome::CodeRequired(_))) {
        // First run of this version on this executor: send the code once; it is cached by hash.
        let code = s
            .store
            .get_code(&f.function_id, f.version)
            .await?
            .ok_or_else(|| not_found(&name, req.version))?;
        rpc.code = Some(code);
        resp = s.executor.invoke(rpc, timeout).await?;
    }
    match resp.outcome {
        Some(Outcome::Success(ok)) => {
            let result = RawValue::from_string(ok.result_json).map_err(|e| {
                tracing::error!(error = %e, "executor returned a result that is not JSON");
                HttpError::new(
                    ErrorCode::Internal,
                    "the executor returned a malformed result",
                )
            })?;
            Ok(InvokeResponse {
                result,
                execution_id,
                version: f.version,
                code_hash: f.code_hash.clone(),
                duration_ms: resp.duration_ms,
                logs: resp.logs,
            })
        }
        Some(Outcome::Failure(fail)) => {
            let code = failure_code(&fail.code);
            let mut details = serde_json::json!({
                "executionId": execution_id,
                "version": f.version,
                "logs": resp.logs,
            });
            if let Some(stack) = fail.stack {
                details["stack"] = stack.into();
            }
            Err(HttpError::new(code, fail.message).details(details))
        }
        Some(Outcome::CodeRequired(_)) | None => {
            tracing::error!(%execution_id, "executor did not run the function after receiving its code");
            Err(HttpError::new(
                ErrorCode::Unavailable,
                "the executor could not run the function",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    /// Every public code crosses executor → gateway → client unchanged: the executor's wire
    /// string is parsed once, the gateway answers with the status the API promises and a body
    /// the client parses back to the same code, and the OpenAPI document lists it.
    #[tokio::test]
    async fn every_error_code_reaches_the_client_as_promised() {
        let doc: serde_json::Value =
            serde_json::from_str(crate::openapi::DOCUMENT).expect("openapi.json");
        let listed = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
            ["enum"];
        for &code in ErrorCode::ALL {
            let parsed = failure_code(code.as_str());
            assert_eq!(parsed, code, "the executor's wire string parses back");
            let resp = HttpError::new(parsed, "msg").into_response();
            assert_eq!(resp.status().as_u16(), code.http_status(), "{code}");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
                .await
                .expect("body");
            let api = cloister_types::ApiError::from_body(&body).expect("an error body");
            assert_eq!(api.code, code);
            assert!(
                listed
                    .as_array()
                    .is_some_and(|a| a.iter().any(|c| c == code.as_str())),
                "{code} is in openapi.json"
            );
        }
        assert_eq!(failure_code("no_such_code"), ErrorCode::Internal);
    }
}
