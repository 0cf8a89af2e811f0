//! Why a signed request or manifest is refused; each maps to one stable public code.

use cloister_types::ErrorCode;

/// A refusal of signed input.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthorityError {
    /// Not a COSE_Sign1 of the documented shape, or not deterministic CBOR.
    #[error("malformed signed request: {0}")]
    Malformed(String),
    /// The signature does not verify under the key it names.
    #[error("the signature does not verify")]
    BadSignature,
    /// Signed for another operation.
    #[error("signed for `{found}`, not `{expected}`")]
    WrongDomain {
        /// Domain in the request.
        found: String,
        /// Domain this operation needs.
        expected: String,
    },
    /// Signed for another platform (keyvault instance).
    #[error("signed for platform {found}, this platform is {expected}")]
    WrongPlatform {
        /// Platform in the request.
        found: String,
        /// This keyvault's instance key.
        expected: String,
    },
    /// Past its expiry.
    #[error("the signed request expired at {expires} (now {now})")]
    Expired {
        /// Expiry in the request (Unix seconds).
        expires: u64,
        /// Verifier's clock.
        now: u64,
    },
    /// Expiry further ahead than allowed.
    #[error("the signed request expires {ahead} s ahead; at most {max} s is accepted")]
    TooLong {
        /// Seconds ahead.
        ahead: u64,
        /// Maximum.
        max: u64,
    },
    /// An identity file could not be used.
    #[error("identity file {path}: {reason}")]
    IdentityFile {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A cryptographic primitive failed.
    #[error("crypto: {0}")]
    Crypto(String),
}

impl AuthorityError {
    /// The stable public error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed(_) => ErrorCode::InvalidRequest,
            Self::BadSignature | Self::WrongDomain { .. } | Self::WrongPlatform { .. } => {
                ErrorCode::BadSignature
            }
            Self::Expired { .. } | Self::TooLong { .. } => ErrorCode::RequestExpired,
            Self::IdentityFile { .. } | Self::Crypto(_) => ErrorCode::Internal,
        }
    }
}

impl From<cloister_crypto::CryptoError> for AuthorityError {
    fn from(e: cloister_crypto::CryptoError) -> Self {
        Self::Crypto(e.to_string())
    }
}
