//! keyvault errors; none carries key material or secret values.

use cloister_crypto::CryptoError;
use thiserror::Error;

/// Why a keyvault operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyvaultError {
    /// The sealed root cannot be opened with this binary's sealing key (different measurement
    /// or platform); migrate with the recovery key.
    #[error("cannot unseal the root key: sealed for measurement {sealed_for}, running {running}")]
    Unseal {
        /// Measurement the root was sealed for (hex).
        sealed_for: String,
        /// Measurement of this binary (hex).
        running: String,
    },
    /// The recovery key does not open the recovery blob.
    #[error("the recovery key does not match this keyvault")]
    WrongRecoveryKey,
    /// A stored key or value failed to decrypt: wrong key, moved row or tampered bytes.
    #[error("stored {what} failed authentication (wrong key, moved or tampered)")]
    Corrupt {
        /// What failed (`MEK`, `DEK`, `secret value`).
        what: &'static str,
    },
    /// Input had the wrong shape.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A cryptographic primitive failed (RNG, encryption).
    #[error("crypto: {0}")]
    Crypto(CryptoError),
}

impl KeyvaultError {
    /// Maps a decryption failure to [`KeyvaultError::Corrupt`], anything else to `Crypto`.
    pub(crate) fn corrupt(what: &'static str) -> impl Fn(CryptoError) -> Self {
        move |e| match e {
            CryptoError::Decrypt => Self::Corrupt { what },
            other => Self::Crypto(other),
        }
    }
}

impl From<CryptoError> for KeyvaultError {
    fn from(e: CryptoError) -> Self {
        Self::Crypto(e)
    }
}
