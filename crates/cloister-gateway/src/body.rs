//! Request bodies: bounded reads and JSON decoding with typed errors.

use axum::body::Body;
use axum::http::HeaderMap;
use cloister_types::ErrorCode;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::{HttpError, HttpResult};

fn too_large(limit: usize) -> HttpError {
    HttpError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body is larger than {limit} bytes"),
    )
    .details(serde_json::json!({ "limitBytes": limit }))
}

/// How much of an oversized body is read and discarded so that the client, still sending,
/// receives the 413 instead of a reset connection. Beyond this the connection is dropped.
const DRAIN_MAX: usize = 16 << 20;

/// How long draining an oversized body may take.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and discards the rest of a body, within [`DRAIN_MAX`] and [`DRAIN_TIME`].
async fn drain(mut body: Body, mut seen: usize) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while seen <= DRAIN_MAX {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    })
    .await;
}

/// Reads at most `limit` bytes of body; larger bodies fail with `payload_too_large`.
pub async fn read_limited(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> HttpResult<bytes::Bytes> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        drain(body, 0).await;
        return Err(too_large(limit));
    }
    let mut buf = bytes::BytesMut::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let inner = e.into_inner();
            match inner.downcast_ref::<crate::listener::BodyDeadlineElapsed>() {
                Some(late) => HttpError::new(ErrorCode::RequestTimeout, late.to_string()),
                None => HttpError::new(
                    ErrorCode::InvalidRequest,
                    format!("could not read the request body: {inner}"),
                ),
            }
        })?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                drain(body, buf.len() + data.len()).await;
                return Err(too_large(limit));
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

/// Decodes a JSON object body into `T`; anything but an object (serde would read a struct
/// from an array of its fields), malformed JSON or wrong fields fail with `invalid_request`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> HttpResult<T> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
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
pub async fn json<T: DeserializeOwned + Send + 'static>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> HttpResult<T> {
    let bytes = read_limited(headers, body, limit).await?;
    off_runtime(bytes.len(), move || parse_json(&bytes)).await
}

/// Work on an input larger than this runs on the blocking pool instead of an async worker.
pub const OFFLOAD_BYTES: usize = 64 * 1024;

/// At most this many large inputs are decoded or checked at once; further ones wait their
/// turn without holding a thread.
static HEAVY: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs `work` over an input of `len` bytes where it cannot stall the async workers that
/// answer everyone else: inline when small, else on the blocking pool, a few at a time (the
/// turn is held by the job itself, so a caller that goes away does not free it early). Large
/// requests queue behind each other; small ones and `/healthz` never wait for them.
pub async fn off_runtime<T, F>(len: usize, work: F) -> HttpResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> HttpResult<T> + Send + 'static,
{
    if len <= OFFLOAD_BYTES {
        return work();
    }
    let turn = HEAVY
        .acquire()
        .await
        .map_err(|_| HttpError::new(ErrorCode::Unavailable, "the gateway is shutting down"))?;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        work()
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "decoding a request body failed");
        HttpError::new(ErrorCode::Internal, "decoding the request body failed")
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Two {
        a: Option<u32>,
        b: Option<u32>,
    }

    #[test]
    fn only_objects_are_bodies() {
        assert!(parse_json::<Two>(b" {\"a\": 1}").is_ok());
        // serde alone reads a struct from an array of its fields.
        assert!(serde_json::from_slice::<Two>(b"[null, null]").is_ok());
        for bad in [&b"[null, null]"[..], b"null", b"", b"  ", b"3"] {
            let e = parse_json::<Two>(bad).unwrap_err();
            assert_eq!(e.0.code, ErrorCode::InvalidRequest, "{bad:?}");
        }
    }
}
