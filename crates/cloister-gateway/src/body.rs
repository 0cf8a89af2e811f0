//! Request bodies: bounded reads and JSON decoding with typed errors.

use axum::body::Body;
use axum::http::HeaderMap;
use cloister_types::ErrorCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::error::{HttpError, HttpResult};

fn too_large(limit: usize) -> HttpError {
    HttpError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body is larger than {limit} bytes"),
    )
    .details(serde_json::json!({ "limitBytes": limit }))
}

/// Reads at most `limit` bytes of body; larger bodies fail with `payload_too_large`.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> HttpResult<bytes::Bytes> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large(limit)),
        Err(e) => Err(HttpError::new(
            ErrorCode::InvalidRequest,
            format!("could not read the request body: {e}"),
        )),
    }
}

/// Decodes a JSON body into `T`; malformed JSON or wrong fields fail with `invalid_request`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> HttpResult<T> {
    if bytes.is_empty() {
        return Err(HttpError::new(
            ErrorCode::InvalidRequest,
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        HttpError::new(ErrorCode::InvalidRequest, format!("invalid JSON body: {e}"))
            .details(serde_json::json!({ "line": line, "column": column }))
    })
}

/// Reads and decodes a JSON body of at most `limit` bytes.
pub async fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> HttpResult<T> {
    let bytes = read_limited(headers, body, limit).await?;
    parse_json(&bytes)
}
