//! Stable error codes of the public API and the JSON error body that carries them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A stable, snake_case error code; clients and tests match on these strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed request: bad JSON, missing or invalid field.
    InvalidRequest,
    /// Deployed code does not compile or lacks its entrypoint.
    InvalidCode,
    /// A secret path or declared secret name is malformed.
    InvalidSecretPath,
    /// Missing or unknown credentials.
    Unauthorized,
    /// Valid credentials, insufficient role.
    Forbidden,
    /// No function with that name (or version).
    FunctionNotFound,
    /// No secret at that path.
    SecretNotFound,
    /// No such route or resource (other than a function or secret).
    NotFound,
    /// The route exists but not with this HTTP method.
    MethodNotAllowed,
    /// The request conflicts with current state.
    Conflict,
    /// A body, code or parameter is over its size limit.
    PayloadTooLarge,
    /// The request's body did not arrive within the gateway's deadline.
    RequestTimeout,
    /// The function ran past its deadline.
    FunctionTimeout,
    /// The function exceeded its memory limit.
    FunctionMemoryLimit,
    /// The function threw, overflowed its stack or its worker crashed.
    FunctionError,
    /// The function returned something that is not JSON or is too large.
    FunctionInvalidOutput,
    /// A declared secret does not exist.
    SecretMissing,
    /// Too many requests.
    RateLimited,
    /// Attestation of a peer failed.
    AttestationFailed,
    /// A backend (executor, store) is not available.
    Unavailable,
    /// An unexpected server-side failure (never carries internal details).
    Internal,
    /// A signed request's signature, signer key or signed fields do not check out (wrong
    /// domain, another platform, not canonical).
    BadSignature,
    /// A signed request expired (or claims to expire too far ahead).
    RequestExpired,
    /// A signed request was already used.
    ReplayedRequest,
    /// The signer is not in keyvault's identity registry.
    UnknownIdentity,
    /// The signer's identity was revoked.
    IdentityRevoked,
    /// The signer (or the token's identity) does not own that function.
    NotOwner,
    /// A manifest does not match what it must (the request, the loaded code, the previous
    /// version, keyvault's name binding).
    ManifestMismatch,
    /// The function version is not active: keyvault releases nothing to it.
    InactiveVersion,
    /// Stored state is older than keyvault knows it to be.
    RollbackDetected,
    /// A sealed invocation expected code other than the code the executor loaded for it.
    CodeHashMismatch,
    /// A sealed invocation names a fleet key no executor holds (another platform's, or
    /// replaced): fetch the attestation bundle again.
    FleetKeyUnknown,
    /// A sealed invocation was sealed to a fleet key past its validity.
    FleetKeyExpired,
    /// A sealed invocation does not open: altered, or sealed for another function, version,
    /// request or time than it claims.
    SealedInputInvalid,
}

impl ErrorCode {
    /// Every code, for documents and tests that must list them all.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidCode,
        ErrorCode::InvalidSecretPath,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::FunctionNotFound,
        ErrorCode::SecretNotFound,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::FunctionTimeout,
        ErrorCode::FunctionMemoryLimit,
        ErrorCode::FunctionError,
        ErrorCode::FunctionInvalidOutput,
        ErrorCode::SecretMissing,
        ErrorCode::RateLimited,
        ErrorCode::AttestationFailed,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::BadSignature,
        ErrorCode::RequestExpired,
        ErrorCode::ReplayedRequest,
        ErrorCode::UnknownIdentity,
        ErrorCode::IdentityRevoked,
        ErrorCode::NotOwner,
        ErrorCode::ManifestMismatch,
        ErrorCode::InactiveVersion,
        ErrorCode::RollbackDetected,
        ErrorCode::CodeHashMismatch,
        ErrorCode::FleetKeyUnknown,
        ErrorCode::FleetKeyExpired,
        ErrorCode::SealedInputInvalid,
    ];

    /// The HTTP status this code is returned with.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidRequest | InvalidCode | InvalidSecretPath | SealedInputInvalid => 400,
            Unauthorized | BadSignature | RequestExpired => 401,
            Forbidden | UnknownIdentity | IdentityRevoked | NotOwner => 403,
            FunctionNotFound | SecretNotFound | NotFound => 404,
            MethodNotAllowed => 405,
            Conflict | ReplayedRequest | ManifestMismatch | InactiveVersion | RollbackDetected
            | CodeHashMismatch | FleetKeyUnknown | FleetKeyExpired => 409,
            RequestTimeout => 408,
            PayloadTooLarge => 413,
            FunctionTimeout
            | FunctionMemoryLimit
            | FunctionError
            | FunctionInvalidOutput
            | SecretMissing => 422,
            RateLimited => 429,
            Internal => 500,
            AttestationFailed | Unavailable => 503,
        }
    }

    /// The wire string of this code.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            InvalidCode => "invalid_code",
            InvalidSecretPath => "invalid_secret_path",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            FunctionNotFound => "function_not_found",
            SecretNotFound => "secret_not_found",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Conflict => "conflict",
            PayloadTooLarge => "payload_too_large",
            RequestTimeout => "request_timeout",
            FunctionTimeout => "function_timeout",
            FunctionMemoryLimit => "function_memory_limit",
            FunctionError => "function_error",
            FunctionInvalidOutput => "function_invalid_output",
            SecretMissing => "secret_missing",
            RateLimited => "rate_limited",
            AttestationFailed => "attestation_failed",
            Unavailable => "unavailable",
            Internal => "internal",
            BadSignature => "bad_signature",
            RequestExpired => "request_expired",
            ReplayedRequest => "replayed_request",
            UnknownIdentity => "unknown_identity",
            IdentityRevoked => "identity_revoked",
            NotOwner => "not_owner",
            ManifestMismatch => "manifest_mismatch",
            InactiveVersion => "inactive_version",
            RollbackDetected => "rollback_detected",
            CodeHashMismatch => "code_hash_mismatch",
            FleetKeyUnknown => "fleet_key_unknown",
            FleetKeyExpired => "fleet_key_expired",
            SealedInputInvalid => "sealed_input_invalid",
        }
    }

    /// Parses a wire string back into a code.
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API error: code, human message (never a secret value) and structured details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Structured extra information (e.g. line/column, stack, limit).
    #[serde(default = "empty_details")]
    pub details: Value,
}

fn empty_details() -> Value {
    Value::Object(serde_json::Map::new())
}

impl ApiError {
    /// Creates an error without details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: empty_details(),
        }
    }

    /// Attaches structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The `{"error": {...}}` body sent to clients.
    pub fn to_body(&self) -> Value {
        serde_json::json!({ "error": self })
    }

    /// Parses an `{"error": {...}}` body.
    pub fn from_body(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Envelope {
            error: ApiError,
        }
        serde_json::from_slice::<Envelope>(body)
            .ok()
            .map(|e| e.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_map_to_documented_statuses() {
        let all = [
            (ErrorCode::InvalidRequest, 400),
            (ErrorCode::InvalidCode, 400),
            (ErrorCode::InvalidSecretPath, 400),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::FunctionNotFound, 404),
            (ErrorCode::SecretNotFound, 404),
            (ErrorCode::NotFound, 404),
            (ErrorCode::MethodNotAllowed, 405),
            (ErrorCode::Conflict, 409),
            (ErrorCode::PayloadTooLarge, 413),
            (ErrorCode::RequestTimeout, 408),
            (ErrorCode::FunctionTimeout, 422),
            (ErrorCode::FunctionMemoryLimit, 422),
            (ErrorCode::FunctionError, 422),
            (ErrorCode::FunctionInvalidOutput, 422),
            (ErrorCode::SecretMissing, 422),
            (ErrorCode::RateLimited, 429),
            (ErrorCode::AttestationFailed, 503),
            (ErrorCode::Unavailable, 503),
            (ErrorCode::Internal, 500),
            (ErrorCode::BadSignature, 401),
            (ErrorCode::RequestExpired, 401),
            (ErrorCode::ReplayedRequest, 409),
            (ErrorCode::UnknownIdentity, 403),
            (ErrorCode::IdentityRevoked, 403),
            (ErrorCode::NotOwner, 403),
            (ErrorCode::ManifestMismatch, 409),
            (ErrorCode::InactiveVersion, 409),
            (ErrorCode::RollbackDetected, 409),
            (ErrorCode::CodeHashMismatch, 409),
            (ErrorCode::FleetKeyUnknown, 409),
            (ErrorCode::FleetKeyExpired, 409),
            (ErrorCode::SealedInputInvalid, 400),
        ];
        assert_eq!(all.len(), ErrorCode::ALL.len(), "ALL lists every code");
        for (code, status) in all {
            assert!(ErrorCode::ALL.contains(&code));
            assert_eq!(code.http_status(), status, "{code}");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, Value::String(code.as_str().into()));
        }
    }

    #[test]
    fn body_round_trips() {
        let e = ApiError::new(ErrorCode::InvalidCode, "line 3")
            .with_details(serde_json::json!({"line": 3}));
        let body = serde_json::to_vec(&e.to_body()).unwrap();
        assert_eq!(ApiError::from_body(&body), Some(e));
    }
}
