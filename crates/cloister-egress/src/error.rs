//! Why an outbound request was refused or failed: one variant per stable code.

use cloister_types::ErrorCode;

/// A refused or failed `fetch`. The message never holds a secret value, a request body or
/// a response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The request itself is malformed (URL, method, headers).
    #[error("fetch: {0}")]
    Invalid(String),
    /// The origin is not on the allowlist.
    #[error("fetch: {0} is not on this function's egress allowlist (fn deploy --egress)")]
    NotAllowed(String),
    /// Plain HTTP where the allowlist has only HTTPS.
    #[error("fetch: {0} is allowed over HTTPS only")]
    Insecure(String),
    /// The name resolved to addresses a connection may not go to.
    #[error(
        "fetch: {host} resolves to {address}, a non-public address the allowlist does not name \
         (list the address itself to allow it)"
    )]
    AddressRefused {
        /// The host name.
        host: String,
        /// The first address refused.
        address: String,
    },
    /// A secret reference where the manifest does not allow that secret.
    #[error("fetch: {0}")]
    SecretRefused(String),
    /// TLS did not verify or the handshake failed.
    #[error("fetch: TLS with {origin} failed: {reason}")]
    Tls {
        /// The origin.
        origin: String,
        /// rustls's reason.
        reason: String,
    },
    /// Name resolution, connection or HTTP failed.
    #[error("fetch: {0}")]
    Failed(String),
    /// Out of time.
    #[error("fetch: {0} did not answer in time")]
    Timeout(String),
    /// Too many requests in one invocation.
    #[error("fetch: an invocation may make at most {0} outbound requests")]
    RequestLimit(u32),
    /// Too many bytes sent.
    #[error("fetch: {0}")]
    SentLimit(String),
    /// Too many bytes received.
    #[error("fetch: {0}")]
    ReceivedLimit(String),
    /// No request slot of the function freed in time.
    #[error("fetch: this function already has {0} outbound requests in flight")]
    ConnectionLimit(usize),
}

impl FetchError {
    /// The stable code the function sees as `error.code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidRequest,
            Self::NotAllowed(_) => ErrorCode::EgressNotAllowed,
            Self::Insecure(_) => ErrorCode::EgressInsecure,
            Self::AddressRefused { .. } => ErrorCode::EgressAddressRefused,
            Self::SecretRefused(_) => ErrorCode::EgressSecretRefused,
            Self::Tls { .. } => ErrorCode::EgressTlsFailed,
            Self::Failed(_) => ErrorCode::EgressFailed,
            Self::Timeout(_) => ErrorCode::EgressTimeout,
            Self::RequestLimit(_) => ErrorCode::EgressRequestLimit,
            Self::SentLimit(_) => ErrorCode::EgressSentLimit,
            Self::ReceivedLimit(_) => ErrorCode::EgressReceivedLimit,
            Self::ConnectionLimit(_) => ErrorCode::EgressConnectionLimit,
        }
    }
}
