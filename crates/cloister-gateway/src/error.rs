//! The gateway's error type: an [`ApiError`] rendered as the documented JSON body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloister_store::StoreError;
use cloister_types::{ApiError, ErrorCode};

/// An error returned by a handler; renders as `{"error": {...}}` with the code's status.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl HttpError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ApiError::new(code, message))
    }

    /// Attaches structured details.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.0.details = details;
        self
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        // Operators see the cause in the log; clients get a stable code without internals.
        tracing::error!(error = %e, "store operation failed");
        match e {
            StoreError::Conflict(_) => Self::new(
                ErrorCode::Conflict,
                "the request conflicts with stored state",
            ),
            _ => Self::new(ErrorCode::Unavailable, "storage is unavailable"),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0.to_body()).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // A missing or refused token says which scheme to use (RFC 6750 §3).
        if self.0.code == ErrorCode::Unauthorized {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cloister\""),
            );
        }
        // Capacity refusals say when to come back (rate limits set their own, longer value).
        if matches!(self.0.code, ErrorCode::Unavailable | ErrorCode::RateLimited) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Result of a handler.
pub type HttpResult<T> = Result<T, HttpError>;
