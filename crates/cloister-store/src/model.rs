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
    /// Version number assigned by keyvault (`None`: the next one).
    pub version: Option<u32>,
    /// Digest of the owner-signed manifest keyvault registered (hex SHA-256).
    pub manifest_digest: String,
    /// Owners keyvault reports for the function (identity ids).
    pub owners: Vec<String>,
    /// Non-secret configuration (`context.env`).
    pub env: std::collections::BTreeMap<String, String>,
    /// The file the code came from.
    pub source_name: Option<String>,
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
    /// Identity (id) the token acts for; developer tokens act only on its functions.
    pub identity: Option<String>,
    /// Function names an invoker token may invoke; empty: every function.
    pub functions: Vec<String>,
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
    /// Identity (id) the token acts for.
    pub identity: Option<String>,
    /// Function names an invoker token may invoke; empty: every function.
    pub functions: Vec<String>,
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

/// Current time in RFC 3339, UTC, always with exactly three fractional digits, so that
/// timestamps also sort correctly as text.
pub(crate) fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// Fixed-width RFC 3339 rendering (`2026-11-23T18:00:00.000Z`).
pub(crate) fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(&fmt)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_and_sort_as_text() {
        let whole = time::macros::datetime!(2026-11-23 18:00:00 UTC);
        let later = time::macros::datetime!(2026-11-23 18:00:00.5 UTC);
        assert_eq!(format_rfc3339(whole), "2026-11-23T18:00:00.000Z");
        assert_eq!(format_rfc3339(later), "2026-11-23T18:00:00.500Z");
        assert!(format_rfc3339(whole) < format_rfc3339(later));
    }
}
