//! Records the store reads and writes, and its error type.

use cloister_types::wire::FunctionInfo;
use cloister_types::{Limits, Role};

/// A version to add (already validated by the caller).
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Function name.
    pub name: String,
    /// Id used only if this creates the function.
    pub new_function_id: String,
    /// Source code.
    pub code: String,
    /// `sha256:<hex>` of `code`.
    pub code_hash: String,
    /// Runtime name.
    pub runtime: String,
    /// Entrypoint identifier.
    pub entrypoint: String,
    /// Environment.
    pub environment: String,
    /// Declared secrets.
    pub required_secrets: Vec<String>,
    /// Resolved limits.
    pub limits: Limits,
}

/// A stored function version: its public metadata (code is fetched separately).
pub type VersionRecord = FunctionInfo;

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Public id (used to revoke).
    pub id: String,
    /// SHA-256 of the bearer value.
    pub hash: [u8; 32],
    /// Role.
    pub role: Role,
    /// Human label.
    pub label: Option<String>,
}

/// A stored, active token (never the value).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    /// Public id.
    pub id: String,
    /// Role.
    pub role: Role,
    /// Human label.
    pub label: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption, constraint); the message is for operators.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// A row could not be decoded into a record.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database was written by a newer Cloister.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// Version found in the database.
        found: u32,
        /// Latest version this build knows.
        supported: u32,
    },
    /// A uniqueness rule was violated (e.g. a token id reused).
    #[error("conflict: {0}")]
    Conflict(String),
}

/// Current time in RFC 3339 (UTC, millisecond precision).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}
