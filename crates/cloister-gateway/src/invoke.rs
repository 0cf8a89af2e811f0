//! `POST /v1/functions/{name}/invoke`: route one invocation to the executor.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use cloister_rpc::executor::{
    FunctionRef, InvokeRequest as RpcInvoke, SealedInput as RpcSealed, invoke_response::Outcome,
};
use cloister_store::VersionRecord;
use cloister_types::sealed::{OUTCOME_OK, SealedFailureDetails, SealedInput, SealedInvokeResponse};
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

/// What an invocation answers: a plain result, or a sealed one only the caller can open.
enum Answer {
    Plain(InvokeResponse),
    Sealed(SealedInvokeResponse),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Plain(r) => Json(r).into_response(),
            Answer::Sealed(r) => Json(r).into_response(),
        }
    }
}

/// `POST /v1/functions/{name}/invoke`.
pub async fn invoke(
    State(s): State<Shared>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> HttpResult<Response> {
    let started = Instant::now();
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Invoker, "invoke functions")?;
    let mut seen = Seen::default();
    let result = invoke_inner(&s, &caller, &headers, name, body, &mut seen).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.0.code.as_str(),
    };
    let elapsed = started.elapsed();
    let duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
    // Per-function series only for names that resolved to a deployed function.
    let resolved = (seen.version > 0)
        .then_some(seen.function.as_deref())
        .flatten();
    s.metrics
        .invocation(resolved, outcome, elapsed.as_secs_f64());
    // One line per invocation: metadata only, never parameters, results, logs or secrets
    // (for a sealed call the gateway holds none of them anyway).
    tracing::info!(
        target: "cloister::invocation",
        function = seen.function.as_deref().unwrap_or("-"),
        version = seen.version,
        execution_id = seen.execution_id.as_deref().unwrap_or("-"),
        sealed = seen.sealed,
        outcome,
        duration_ms,
        executor_ms = seen.executor_ms,
        worker_replaced = seen.worker_replaced,
        "invocation"
    );
    if let (Some(id), Some(execution_id)) = (&seen.function_id, &seen.execution_id) {
        s.history.record(
            id,
            cloister_types::wire::InvocationRecord {
                seq: 0,
                at: crate::history::now_rfc3339(),
                execution_id: execution_id.clone(),
                version: seen.version,
                outcome: outcome.to_owned(),
                duration_ms,
                sealed: seen.sealed,
                logs: std::mem::take(&mut seen.logs),
                error: seen.error.take(),
            },
        );
    }
    result.map(IntoResponse::into_response)
}

/// What the per-invocation log line reports, filled in as the request is understood.
#[derive(Default)]
struct Seen {
    function: Option<String>,
    function_id: Option<String>,
    /// Plain invocations only: the lines logged and the failure's message.
    logs: Vec<String>,
    error: Option<String>,
    version: u32,
    execution_id: Option<String>,
    sealed: bool,
    executor_ms: f64,
    /// The executor stopped or retired the worker after this call.
    worker_replaced: bool,
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

/// HPKE's encapsulated key and AEAD tag around the sealed parameters.
const SEALED_OVERHEAD: usize = cloister_crypto::hpke_seal::ENC_LEN + 16;

fn too_large(what: &str, size: usize, limit: usize) -> HttpError {
    HttpError::new(
        ErrorCode::PayloadTooLarge,
        format!("{what} are {size} bytes; the maximum is {limit}"),
    )
    .details(serde_json::json!({ "limitBytes": limit, "sizeBytes": size }))
}

/// Checks the shape of a sealed request (what it claims only the executor can check) and
/// turns it into its RPC form; the gateway never reads the parameters.
fn sealed_rpc(sealed: SealedInput, max_input: usize) -> HttpResult<RpcSealed> {
    sealed
        .check()
        .map_err(|e| HttpError::new(ErrorCode::SealedInputInvalid, e.to_string()))?;
    let ciphertext = base64::engine::general_purpose::STANDARD
        .decode(&sealed.ciphertext)
        .map_err(|_| {
            HttpError::new(
                ErrorCode::SealedInputInvalid,
                "\"ciphertext\" must be standard base64",
            )
        })?;
    if ciphertext.len() < SEALED_OVERHEAD {
        return Err(HttpError::new(
            ErrorCode::SealedInputInvalid,
            "the ciphertext is shorter than HPKE's encapsulated key and tag",
        ));
    }
    let params_len = ciphertext.len() - SEALED_OVERHEAD;
    if params_len > max_input {
        return Err(too_large("sealed params", params_len, max_input));
    }
    Ok(RpcSealed {
        suite: sealed.suite,
        key_id: sealed.key_id,
        function_id: sealed.function_id,
        version: sealed.version,
        code_hash: sealed.code_hash,
        manifest_digest: sealed.manifest_digest,
        request_id: sealed.request_id,
        timestamp: sealed.timestamp,
        ciphertext,
    })
}

async fn invoke_inner(
    s: &Shared,
    caller: &crate::auth::Caller,
    headers: &HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Body,
    seen: &mut Seen,
) -> HttpResult<Answer> {
    let name = path_arg(name)?;
    caller.require_function(&name)?;
    seen.function = Some(name.clone());
    // Base64 of a sealed request is a third larger than its parameters.
    let limit = (s.limits.max_input_bytes / 3 * 4).saturating_add(16 * 1024);
    let bytes = body::read_limited(headers, body, limit).await?;
    let req: InvokeRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        InvokeRequest {
            params: None,
            version: None,
            sealed: None,
            receipt_nonce: None,
            receipt_signer: None,
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
    let (params, sealed, version) = match req.sealed {
        Some(sealed) => {
            if req.params.is_some() {
                return Err(HttpError::new(
                    ErrorCode::InvalidRequest,
                    "a request carries either \"params\" or \"sealed\", not both",
                ));
            }
            if req.version.is_some_and(|v| v != sealed.version) {
                return Err(HttpError::new(
                    ErrorCode::InvalidRequest,
                    "\"version\" differs from the version the request is sealed for",
                ));
            }
            let version = Some(sealed.version);
            (
                String::new(),
                Some(sealed_rpc(sealed, s.limits.max_input_bytes)?),
                version,
            )
        }
        None => {
            let params = req
                .params
                .map(|p| p.get().to_owned())
                .unwrap_or_else(|| "null".to_owned());
            if params.len() > s.limits.max_input_bytes {
                return Err(too_large("params", params.len(), s.limits.max_input_bytes));
            }
            (params, None, req.version)
        }
    };
    let receipt_nonce = match &req.receipt_nonce {
        None => Vec::new(),
        Some(n) => hex::decode(n)
            .ok()
            .filter(|b| !b.is_empty() && b.len() <= cloister_types::receipt::MAX_NONCE_LEN)
            .ok_or_else(|| {
                HttpError::new(
                    ErrorCode::InvalidRequest,
                    "\"receiptNonce\" must be 1 to 64 bytes in hex",
                )
            })?,
    };
    let receipt_signer = match &req.receipt_signer {
        None => Vec::new(),
        Some(k) => hex::decode(k)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                HttpError::new(
                    ErrorCode::InvalidRequest,
                    "\"receiptSigner\" must be an Ed25519 public key: 64 hex digits",
                )
            })?,
    };
    let request_id = sealed.as_ref().map(|x| x.request_id.clone());
    seen.sealed = sealed.is_some();
    let f = s.functions.resolve(&name, version).await?;
    seen.version = f.version;
    seen.function_id = Some(f.function_id.clone());
    // The namespace's change counter also moves on (de)activation and redeploys, so cached
    // grants of every function, with or without secrets, are refreshed at once.
    let secrets_epoch = s.epochs.of_function(&f.function_id).await;
    let execution_id = uuid::Uuid::new_v4().to_string();
    seen.execution_id = Some(execution_id.clone());
    let timeout = Duration::from_millis(f.limits.timeout_ms) + DISPATCH_SLACK;
    let mut rpc = RpcInvoke {
        function: Some(function_ref(&f, secrets_epoch)),
        params_json: params,
        code: None,
        execution_id: execution_id.clone(),
        link_id: Vec::new(),
        sealed,
        receipt_nonce,
        receipt_signer,
    };
    let mut resp = s.executor.invoke(rpc.clone(), timeout).await?;
    if matches!(resp.outcome, Some(Outcome::CodeRequired(_))) {
        // First run of this version on this executor: send the code once; it is cached by hash.
        let code = s
            .store
            .get_code(&f.function_id, f.version)
            .await?
            .ok_or_else(|| not_found(&name, version))?;
        rpc.code = Some(code);
        resp = s.executor.invoke(rpc, timeout).await?;
    }
    seen.executor_ms = resp.duration_ms;
    seen.worker_replaced = resp.worker_replaced;
    let receipt = if resp.receipt_json.is_empty() {
        None
    } else {
        // Relayed as is: its signature covers its fields, not this JSON's bytes.
        Some(
            serde_json::from_str::<cloister_types::receipt::Receipt>(&resp.receipt_json).map_err(
                |e| {
                    tracing::error!(error = %e, "executor returned a malformed receipt");
                    HttpError::new(
                        ErrorCode::Internal,
                        "the executor returned a malformed receipt",
                    )
                },
            )?,
        )
    };
    match resp.outcome {
        Some(Outcome::Sealed(sealed)) => {
            let Some(request_id) = request_id else {
                tracing::error!(%execution_id, "the executor sealed an answer to a plain request");
                return Err(HttpError::new(
                    ErrorCode::Internal,
                    "the executor returned a malformed result",
                ));
            };
            let b64 = base64::engine::general_purpose::STANDARD.encode(&sealed.sealed);
            if sealed.outcome == OUTCOME_OK {
                return Ok(Answer::Sealed(SealedInvokeResponse {
                    request_id,
                    execution_id,
                    version: f.version,
                    code_hash: f.code_hash.clone(),
                    duration_ms: resp.duration_ms,
                    outcome: sealed.outcome,
                    sealed: b64,
                    receipt,
                }));
            }
            let details = SealedFailureDetails {
                request_id,
                execution_id,
                version: f.version,
                sealed: b64,
                receipt,
            };
            Err(HttpError::new(
                failure_code(&sealed.outcome),
                "the function failed; its message, stack and logs are sealed for the caller",
            )
            .details(serde_json::to_value(details).unwrap_or_default()))
        }
        Some(Outcome::Success(ok)) => {
            seen.logs = resp.logs.clone();
            let result = RawValue::from_string(ok.result_json).map_err(|e| {
                tracing::error!(error = %e, "executor returned a result that is not JSON");
                HttpError::new(
                    ErrorCode::Internal,
                    "the executor returned a malformed result",
                )
            })?;
            Ok(Answer::Plain(InvokeResponse {
                result,
                execution_id,
                version: f.version,
                code_hash: f.code_hash.clone(),
                duration_ms: resp.duration_ms,
                logs: resp.logs,
                receipt,
            }))
        }
        Some(Outcome::Failure(fail)) => {
            let code = failure_code(&fail.code);
            if !seen.sealed {
                seen.logs = resp.logs.clone();
                seen.error = Some(fail.message.clone());
            }
            let mut details = serde_json::json!({
                "executionId": execution_id,
                "version": f.version,
                "logs": resp.logs,
            });
            if let Some(stack) = fail.stack {
                details["stack"] = stack.into();
            }
            if let Some(cause) = fail.cause.as_deref().and_then(ErrorCode::parse) {
                details["code"] = cause.as_str().into();
            }
            if let Some(r) = receipt {
                details["receipt"] = serde_json::to_value(r).unwrap_or_default();
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
