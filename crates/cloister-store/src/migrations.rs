//! The gateway store's schema track: function metadata, code, tokens. Nothing of keyvault's
//! lives here (its tables are in `cloister-vault-store`, its own database or schema).

use cloister_db::migrate::{Legacy, Migration, Track};

/// Every migration of the gateway's store, in order. Never edit a released entry: append.
pub(crate) const TRACK: Track = Track {
    name: "gateway",
    migrations: &[Migration {
        version: 1,
        name: "functions, versions, tokens",
        sqlite: "
        CREATE TABLE functions (
            id              TEXT PRIMARY KEY,
            name            TEXT NOT NULL UNIQUE,
            created_at      TEXT NOT NULL,
            owners          TEXT NOT NULL DEFAULT '[]',
            current_version INTEGER
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
            manifest_digest  TEXT NOT NULL DEFAULT '',
            env              TEXT NOT NULL DEFAULT '{}',
            source_name      TEXT,
            PRIMARY KEY (function_id, version)
        );
        CREATE TABLE tokens (
            id          TEXT PRIMARY KEY,
            hash        BLOB NOT NULL UNIQUE,
            role        TEXT NOT NULL,
            label       TEXT,
            created_at  TEXT NOT NULL,
            revoked_at  TEXT,
            identity    TEXT,
            functions   TEXT NOT NULL DEFAULT '[]'
        );
    ",
        postgres: "
        CREATE TABLE functions (
            id              TEXT PRIMARY KEY,
            name            TEXT NOT NULL UNIQUE,
            created_at      TEXT NOT NULL,
            owners          TEXT NOT NULL DEFAULT '[]',
            current_version BIGINT
        );
        CREATE TABLE function_versions (
            function_id      TEXT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
            version          BIGINT NOT NULL,
            code             TEXT NOT NULL,
            code_hash        TEXT NOT NULL,
            runtime          TEXT NOT NULL,
            entrypoint       TEXT NOT NULL,
            environment      TEXT NOT NULL,
            required_secrets TEXT NOT NULL,
            timeout_ms       BIGINT NOT NULL,
            memory_mb        BIGINT NOT NULL,
            created_at       TEXT NOT NULL,
            manifest_digest  TEXT NOT NULL DEFAULT '',
            env              TEXT NOT NULL DEFAULT '{}',
            source_name      TEXT,
            PRIMARY KEY (function_id, version)
        );
        CREATE TABLE tokens (
            id          TEXT PRIMARY KEY,
            hash        BYTEA NOT NULL UNIQUE,
            role        TEXT NOT NULL,
            label       TEXT,
            created_at  TEXT NOT NULL,
            revoked_at  TEXT,
            identity    TEXT,
            functions   TEXT NOT NULL DEFAULT '[]'
        );
        CREATE INDEX tokens_identity ON tokens (identity);
    ",
    }],
    legacy: Some(Legacy {
        last_version: 8,
        adopt_up_to: 1,
        drop_tables: &[
            "kv_root",
            "kv_meks",
            "kv_deks",
            "kv_secrets",
            "kv_epochs",
            "kv_authority",
            "kv_nonces",
            "audit_log",
            "audit_checkpoints",
        ],
    }),
};
