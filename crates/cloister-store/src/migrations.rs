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
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    Migration {
        version: 2,
        name: "keyvault ciphertext tables, audit log",
        sql: "
        CREATE TABLE kv_root (
            singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
            root_id      TEXT NOT NULL,
            measurement  TEXT NOT NULL,
            sealed       BLOB NOT NULL,
            recovery     BLOB NOT NULL,
            created_at   TEXT NOT NULL,
            updated_at   TEXT NOT NULL
        );
        CREATE TABLE kv_meks (
            id          TEXT PRIMARY KEY,
            kek_id      TEXT NOT NULL,
            wrapped     BLOB NOT NULL,
            active      INTEGER NOT NULL,
            created_at  TEXT NOT NULL
        );
        CREATE TABLE kv_deks (
            namespace   TEXT NOT NULL,
            version     INTEGER NOT NULL,
            id          TEXT NOT NULL UNIQUE,
            mek_id      TEXT NOT NULL,
            wrapped     BLOB NOT NULL,
            created_at  TEXT NOT NULL,
            PRIMARY KEY (namespace, version)
        );
        CREATE TABLE kv_secrets (
            path        TEXT NOT NULL,
            version     INTEGER NOT NULL,
            namespace   TEXT NOT NULL,
            dek_version INTEGER NOT NULL,
            ciphertext  BLOB NOT NULL,
            created_at  TEXT NOT NULL,
            PRIMARY KEY (path, version)
        );
        CREATE INDEX kv_secrets_namespace ON kv_secrets (namespace);
        CREATE TABLE kv_epochs (
            namespace   TEXT PRIMARY KEY,
            epoch       INTEGER NOT NULL
        );
        CREATE TABLE audit_log (
            seq         INTEGER PRIMARY KEY,
            at          TEXT NOT NULL,
            actor       TEXT NOT NULL,
            action      TEXT NOT NULL,
            subject     TEXT NOT NULL,
            details     TEXT NOT NULL,
            prev_hash   TEXT NOT NULL,
            hash        TEXT NOT NULL
        );
        CREATE TABLE audit_checkpoints (
            seq         INTEGER PRIMARY KEY,
            hash        TEXT NOT NULL,
            at          TEXT NOT NULL,
            key         TEXT NOT NULL,
            signature   TEXT NOT NULL
        );
    ",
    },
    Migration {
        version: 3,
        name: "keyvault authority rows (MACed), used nonces, manifest digests",
        sql: "
        CREATE TABLE kv_authority (
            kind        TEXT NOT NULL,
            key         TEXT NOT NULL,
            value       BLOB NOT NULL,
            mac         BLOB NOT NULL,
            updated_at  TEXT NOT NULL,
            PRIMARY KEY (kind, key)
        );
        CREATE TABLE kv_nonces (
            nonce       TEXT PRIMARY KEY,
            expires     INTEGER NOT NULL
        );
        ALTER TABLE function_versions ADD COLUMN manifest_digest TEXT NOT NULL DEFAULT '';
    ",
    },
    Migration {
        version: 4,
        name: "audit entries MACed by keyvault",
        sql: "
        ALTER TABLE audit_log ADD COLUMN mac TEXT NOT NULL DEFAULT '';
    ",
    },
    Migration {
        version: 5,
        name: "tokens bound to identities, function owners (HTTP-layer checks)",
        sql: "
        ALTER TABLE tokens ADD COLUMN identity TEXT;
        ALTER TABLE functions ADD COLUMN owners TEXT NOT NULL DEFAULT '[]';
    ",
    },
    Migration {
        version: 6,
        name: "a function's current version (rollback); NULL: its latest",
        sql: "
        ALTER TABLE functions ADD COLUMN current_version INTEGER;
    ",
    },
    Migration {
        version: 7,
        name: "invoker tokens scoped to functions",
        sql: "
        ALTER TABLE tokens ADD COLUMN functions TEXT NOT NULL DEFAULT '[]';
    ",
    },
    Migration {
        version: 8,
        name: "non-secret configuration and source file name of a function version",
        sql: "
        ALTER TABLE function_versions ADD COLUMN env TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE function_versions ADD COLUMN source_name TEXT;
    ",
    },
];

/// Latest schema version this build knows.
pub(crate) fn latest() -> u32 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}
