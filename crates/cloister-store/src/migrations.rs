//! Versioned schema migrations: each applied once, in order, inside a transaction.

/// One schema step.
pub(crate) struct Migration {
    /// Sequential number, starting at 1.
    pub version: u32,
    /// What it does, for the migrations table.
    pub name: &'static str,
    /// Portable SQL (no backend-specific types beyond TEXT/INTEGER/BLOB).
    pub sql: &'static str,
}

/// Every migration, in order. Never edit a released entry: append a new one.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "functions, versions, tokens",
    sql: "
        CREATE TABLE functions (
            id          TEXT PRIMARY KEY,
            name        TEXT NOT NULL UNIQUE,
            created_at  TEXT NOT NULL
        );
        CREATE TABLE function_versions (
            function_id      TEXT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
            version          INTEGER NOT NULL,
            code             TEXT NOT NULL,
            code_hash        TEXT NOT NULL,
            runtime          TEXT NOT NULL,
            entrypoint       TEXT NOT NULL,
            environment      TEXT NOT NULL,
            required_secrets TEXT NOT NULL,
            timeout_ms       INTEGER NOT NULL,
            memory_mb        INTEGER NOT NULL,
            created_at       TEXT NOT NULL,
            PRIMARY KEY (function_id, version)
        );
        CREATE TABLE tokens (
            id          TEXT PRIMARY KEY,
            hash        BLOB NOT NULL UNIQUE,
            role        TEXT NOT NULL,
            label       TEXT,
            created_at  TEXT NOT NULL,
            revoked_at  TEXT
        );
    ",
}];

/// Latest schema version this build knows.
pub(crate) fn latest() -> u32 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}
