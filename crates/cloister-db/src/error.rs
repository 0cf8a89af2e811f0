//! The one error type of every store backend.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (constraint, bad statement, I/O); the message is for operators.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The database cannot be reached now (connection refused or lost, pool exhausted);
    /// retrying later may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
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
    /// A uniqueness or compare-and-set rule was violated (e.g. a token id reused, a row
    /// changed concurrently).
    #[error("conflict: {0}")]
    Conflict(String),
}
