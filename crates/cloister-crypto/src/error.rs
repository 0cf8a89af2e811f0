//! Errors from cryptographic operations; none of them carries key or plaintext bytes.

use thiserror::Error;

/// Why a cryptographic operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// Authentication failed: wrong key, wrong AAD (moved ciphertext) or tampered bytes.
    #[error("decryption failed: wrong key, wrong context or tampered ciphertext")]
    Decrypt,
    /// Encryption failed inside the library (should not happen with valid keys).
    #[error("encryption failed")]
    Encrypt,
    /// Input bytes do not have the expected layout.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Rng,
}

impl CryptoError {
    /// Shorthand for [`CryptoError::Malformed`].
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            what,
            reason: reason.into(),
        }
    }
}
