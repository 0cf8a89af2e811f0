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

/// Why a vault operation failed, classified by its public error code.
#[derive(Debug, Error)]
pub enum VaultError {
    /// Key hierarchy failure (unseal, corrupt ciphertext, crypto).
    #[error(transparent)]
    Keys(#[from] KeyvaultError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] cloister_vault_store::StoreError),
    /// No secret (or state) there.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A declared secret does not exist.
    #[error("declared secret `{name}` does not exist in environment `{environment}`")]
    Missing {
        /// The secret's name as declared.
        name: String,
        /// The environment the function runs in.
        environment: String,
    },
    /// The request had the wrong shape.
    #[error("{0}")]
    Invalid(String),
    /// A value above the size limit.
    #[error("the secret value is {bytes} bytes; the maximum is {max}")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A function's declared secrets hold more than one release may carry.
    #[error(
        "the function's declared secrets hold more than {max} bytes together (names and values); \
         keyvault releases at most that to one function"
    )]
    ReleaseTooLarge {
        /// The limit.
        max: usize,
    },
    /// The sealed value could not be opened.
    #[error(
        "the sealed value cannot be opened: it was sealed to another key, for another path, or is damaged"
    )]
    BadSealedValue,
    /// Concurrent writers kept winning; try again.
    #[error("keyvault is busy with concurrent changes to the same keys; retry")]
    Busy,
    /// The audit chain does not extend keyvault's last checkpoint (cut, regrown or rewritten).
    #[error("the audit chain diverged from keyvault's record at entry {0}")]
    AuditDiverged(u64),
    /// An authority check refused the request.
    #[error(transparent)]
    Denied(#[from] crate::authority::Denied),
    /// No key of that name in the namespace.
    #[error("no key `{0}` in this function's namespace (cloister key create)")]
    KeyNotFound(String),
    /// A key of that name exists already.
    #[error("a key `{0}` exists already in this function's namespace (rotate it instead)")]
    KeyExists(String),
    /// The manifest the executor runs does not declare the key.
    #[error("this function's manifest does not declare the key `{0}` (fn deploy --key)")]
    KeyNotDeclared(String),
    /// The key is another function's, which has not granted it to this one.
    #[error(
        "the key `{0}` is not granted to this function (its owner grants it: cloister key grant)"
    )]
    KeyNotGranted(String),
    /// The key was not created exportable.
    #[error("the key `{0}` was created without exportable: it never leaves keyvault")]
    KeyNotExportable(String),
    /// The manifest's limits on the key refuse this use.
    #[error("key `{key}`: {violation}")]
    KeyLimit {
        /// The key.
        key: String,
        /// Which limit.
        violation: cloister_types::key_limits::KeyLimitViolation,
    },
    /// The key signed as often as the manifest's rate allows.
    #[error(
        "key `{key}` signed as often as this function's rate ({rate}) allows; retry in {retry_after_ms} ms"
    )]
    KeyRateLimited {
        /// The key.
        key: String,
        /// The rate.
        rate: cloister_types::KeyRate,
        /// When one more use fits.
        retry_after_ms: u64,
    },
}

impl VaultError {
    /// The stable public error code.
    pub fn code(&self) -> cloister_types::ErrorCode {
        use cloister_types::ErrorCode as C;
        match self {
            Self::TooLarge { .. } | Self::ReleaseTooLarge { .. } => C::PayloadTooLarge,
            Self::Keys(KeyvaultError::Invalid { .. }) | Self::Invalid(_) | Self::BadSealedValue => {
                C::InvalidRequest
            }
            Self::NotFound(_) => C::SecretNotFound,
            Self::Missing { .. } => C::SecretMissing,
            Self::Busy => C::Conflict,
            Self::Keys(_) | Self::Store(_) => C::Unavailable,
            Self::Denied(d) => d.code(),
            Self::AuditDiverged(_) => C::RollbackDetected,
            Self::KeyNotFound(_) => C::KeyNotFound,
            Self::KeyExists(_) => C::Conflict,
            Self::KeyNotDeclared(_) => C::KeyNotDeclared,
            Self::KeyLimit { violation, .. } => violation.code(),
            Self::KeyRateLimited { .. } => C::KeyRateLimited,
            Self::KeyNotGranted(_) => C::KeyNotGranted,
            Self::KeyNotExportable(_) => C::KeyNotExportable,
        }
    }
}
