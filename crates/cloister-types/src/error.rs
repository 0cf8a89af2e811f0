//! Stable error codes of the public API and the JSON error body that carries them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The one table of error codes: each variant with its wire string and HTTP status. The enum,
/// [`ErrorCode::ALL`], [`ErrorCode::as_str`], [`ErrorCode::parse`] and
/// [`ErrorCode::http_status`] are generated from it, so a code is defined once and crosses
/// the worker, executor, keyvault and gateway unchanged.
macro_rules! error_codes {
    ($( $(#[doc = $doc:expr])* $variant:ident = $wire:literal, $status:literal; )*) => {
        /// A stable, snake_case error code; clients and tests match on these strings.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, for documents and tests that must list them all.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The HTTP status this code is returned with.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// The wire string of this code.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $wire,)* }
            }

            /// Parses a wire string back into a code.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    /// Malformed request: bad JSON, missing or invalid field.
    InvalidRequest = "invalid_request", 400;
    /// Deployed code does not compile or lacks its entrypoint.
    InvalidCode = "invalid_code", 400;
    /// A secret path or declared secret name is malformed.
    InvalidSecretPath = "invalid_secret_path", 400;
    /// Missing or unknown credentials.
    Unauthorized = "unauthorized", 401;
    /// Valid credentials, insufficient role.
    Forbidden = "forbidden", 403;
    /// No function with that name (or version).
    FunctionNotFound = "function_not_found", 404;
    /// No secret at that path.
    SecretNotFound = "secret_not_found", 404;
    /// No such route or resource (other than a function or secret).
    NotFound = "not_found", 404;
    /// The route exists but not with this HTTP method.
    MethodNotAllowed = "method_not_allowed", 405;
    /// The request conflicts with current state.
    Conflict = "conflict", 409;
    /// A body, code or parameter is over its size limit.
    PayloadTooLarge = "payload_too_large", 413;
    /// The request's body did not arrive within the gateway's deadline.
    RequestTimeout = "request_timeout", 408;
    /// The function ran past its deadline.
    FunctionTimeout = "function_timeout", 422;
    /// The function exceeded its memory limit.
    FunctionMemoryLimit = "function_memory_limit", 422;
    /// The function threw, overflowed its stack or its worker crashed.
    FunctionError = "function_error", 422;
    /// The function returned something that is not JSON or is too large.
    FunctionInvalidOutput = "function_invalid_output", 422;
    /// A declared secret does not exist.
    SecretMissing = "secret_missing", 422;
    /// Too many requests.
    RateLimited = "rate_limited", 429;
    /// Attestation of a peer failed.
    AttestationFailed = "attestation_failed", 503;
    /// A backend (executor, store) is not available.
    Unavailable = "unavailable", 503;
    /// An unexpected server-side failure (never carries internal details).
    Internal = "internal", 500;
    /// A signed request's signature, signer key or signed fields do not check out (wrong
    /// domain, another platform, not canonical).
    BadSignature = "bad_signature", 401;
    /// A signed request expired (or claims to expire too far ahead).
    RequestExpired = "request_expired", 401;
    /// A signed request was already used.
    ReplayedRequest = "replayed_request", 409;
    /// The signer is not in keyvault's identity registry.
    UnknownIdentity = "unknown_identity", 403;
    /// The signer's identity was revoked.
    IdentityRevoked = "identity_revoked", 403;
    /// The signer (or the token's identity) does not own that function.
    NotOwner = "not_owner", 403;
    /// A manifest does not match what it must (the request, the loaded code, the previous
    /// version, keyvault's name binding).
    ManifestMismatch = "manifest_mismatch", 409;
    /// The function version is not active: keyvault releases nothing to it.
    InactiveVersion = "inactive_version", 409;
    /// Stored state is older than keyvault knows it to be.
    RollbackDetected = "rollback_detected", 409;
    /// A sealed invocation expected code other than the code the executor loaded for it.
    CodeHashMismatch = "code_hash_mismatch", 409;
    /// A sealed invocation names a fleet key no executor holds (another platform's, or
    /// replaced): fetch the attestation bundle again.
    FleetKeyUnknown = "fleet_key_unknown", 409;
    /// A sealed invocation was sealed to a fleet key past its validity.
    FleetKeyExpired = "fleet_key_expired", 409;
    /// A sealed invocation does not open: altered, or sealed for another function, version,
    /// request or time than it claims.
    SealedInputInvalid = "sealed_input_invalid", 400;
    /// The function asked its host for a capability its manifest does not grant.
    CapabilityNotGranted = "capability_not_granted", 403;
    /// No key of that name in the function's namespace.
    KeyNotFound = "key_not_found", 404;
    /// The function's manifest does not declare that key.
    KeyNotDeclared = "key_not_declared", 403;
    /// The manifest's limits on that key do not allow the operation (or the hash).
    KeyOperationNotAllowed = "key_operation_not_allowed", 403;
    /// The message is larger than the manifest's limits on that key allow.
    KeyMessageTooLarge = "key_message_too_large", 413;
    /// The message does not begin with the prefix (domain tag) the manifest requires.
    KeyDomainTagMissing = "key_domain_tag_missing", 403;
    /// The key signed as often as the manifest's rate allows; try again later.
    KeyRateLimited = "key_rate_limited", 429;
    /// The function declares another function's key (`FUNCTION/NAME`) that its owner has not
    /// granted to it (or has revoked).
    KeyNotGranted = "key_not_granted", 403;
    /// The key was created without `exportable`: it never leaves keyvault.
    KeyNotExportable = "key_not_exportable", 403;
    /// The URL (or a redirect's) is not on the manifest's egress allowlist.
    EgressNotAllowed = "egress_not_allowed", 403;
    /// The host resolves to a loopback, private, link-local or otherwise non-public address the allowlist does not name.
    EgressAddressRefused = "egress_address_refused", 403;
    /// Plain HTTP to an origin the manifest allows only over HTTPS.
    EgressInsecure = "egress_insecure", 403;
    /// A secret reference placed where the manifest does not bind that secret (another origin, header, path, the URL or the body), or not this invocation's.
    EgressSecretRefused = "egress_secret_refused", 403;
    /// The server's certificate did not verify (untrusted root, expired, wrong name) or the TLS handshake failed.
    EgressTlsFailed = "egress_tls_failed", 502;
    /// The request could not be made: the name did not resolve, the connection failed, or the response was not HTTP.
    EgressFailed = "egress_failed", 502;
    /// The request did not complete in time (its own limit or the invocation's deadline).
    EgressTimeout = "egress_timeout", 504;
    /// The invocation made as many outbound requests as it may.
    EgressRequestLimit = "egress_request_limit", 429;
    /// The request (or the invocation's requests together) would send more bytes than allowed.
    EgressSentLimit = "egress_sent_limit", 413;
    /// The response (or the invocation's responses together) is larger than allowed.
    EgressReceivedLimit = "egress_received_limit", 413;
    /// The function has as many outbound requests in flight as it may, and none finished in time.
    EgressConnectionLimit = "egress_connection_limit", 429;
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ErrorCode::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{s}`")))
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
            (ErrorCode::CapabilityNotGranted, 403),
            (ErrorCode::KeyNotFound, 404),
            (ErrorCode::KeyNotDeclared, 403),
            (ErrorCode::KeyOperationNotAllowed, 403),
            (ErrorCode::KeyMessageTooLarge, 413),
            (ErrorCode::KeyDomainTagMissing, 403),
            (ErrorCode::KeyRateLimited, 429),
            (ErrorCode::KeyNotGranted, 403),
            (ErrorCode::KeyNotExportable, 403),
            (ErrorCode::EgressNotAllowed, 403),
            (ErrorCode::EgressAddressRefused, 403),
            (ErrorCode::EgressInsecure, 403),
            (ErrorCode::EgressSecretRefused, 403),
            (ErrorCode::EgressTlsFailed, 502),
            (ErrorCode::EgressFailed, 502),
            (ErrorCode::EgressTimeout, 504),
            (ErrorCode::EgressRequestLimit, 429),
            (ErrorCode::EgressSentLimit, 413),
            (ErrorCode::EgressReceivedLimit, 413),
            (ErrorCode::EgressConnectionLimit, 429),
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
