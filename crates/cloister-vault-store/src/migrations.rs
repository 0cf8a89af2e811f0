//! keyvault's schema track. None of the gateway's tables live here.

use cloister_db::migrate::{Legacy, Migration, Track};

/// Every migration of keyvault's store, in order. Never edit a released entry: append.
pub(crate) const TRACK: Track = Track {
    name: "vault",
    migrations: &[
        Migration {
            version: 1,
            name: "root, keys, secrets, epochs, authority rows, nonces, audit log",
            sqlite: "
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
            hash        TEXT NOT NULL,
            mac         TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE audit_checkpoints (
            seq         INTEGER PRIMARY KEY,
            hash        TEXT NOT NULL,
            at          TEXT NOT NULL,
            key         TEXT NOT NULL,
            signature   TEXT NOT NULL
        );
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
    ",
            postgres: "
        CREATE TABLE kv_root (
            singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
            root_id      TEXT NOT NULL,
            measurement  TEXT NOT NULL,
            sealed       BYTEA NOT NULL,
            recovery     BYTEA NOT NULL,
            created_at   TEXT NOT NULL,
            updated_at   TEXT NOT NULL
        );
        CREATE TABLE kv_meks (
            id          TEXT PRIMARY KEY,
            kek_id      TEXT NOT NULL,
            wrapped     BYTEA NOT NULL,
            active      BOOLEAN NOT NULL,
            created_at  TEXT NOT NULL
        );
        CREATE TABLE kv_deks (
            namespace   TEXT NOT NULL,
            version     BIGINT NOT NULL,
            id          TEXT NOT NULL UNIQUE,
            mek_id      TEXT NOT NULL,
            wrapped     BYTEA NOT NULL,
            created_at  TEXT NOT NULL,
            PRIMARY KEY (namespace, version)
        );
        CREATE TABLE kv_secrets (
            path        TEXT NOT NULL,
            version     BIGINT NOT NULL,
            namespace   TEXT NOT NULL,
            dek_version BIGINT NOT NULL,
            ciphertext  BYTEA NOT NULL,
            created_at  TEXT NOT NULL,
            PRIMARY KEY (path, version)
        );
        CREATE INDEX kv_secrets_namespace ON kv_secrets (namespace);
        CREATE TABLE kv_epochs (
            namespace   TEXT PRIMARY KEY,
            epoch       BIGINT NOT NULL
        );
        CREATE TABLE audit_log (
            seq         BIGINT PRIMARY KEY,
            at          TEXT NOT NULL,
            actor       TEXT NOT NULL,
            action      TEXT NOT NULL,
            subject     TEXT NOT NULL,
            details     TEXT NOT NULL,
            prev_hash   TEXT NOT NULL,
            hash        TEXT NOT NULL,
            mac         TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE audit_checkpoints (
            seq         BIGINT PRIMARY KEY,
            hash        TEXT NOT NULL,
            at          TEXT NOT NULL,
            key         TEXT NOT NULL,
            signature   TEXT NOT NULL
        );
        CREATE TABLE kv_authority (
            kind        TEXT NOT NULL,
            key         TEXT NOT NULL,
            value       BYTEA NOT NULL,
            mac         BYTEA NOT NULL,
            updated_at  TEXT NOT NULL,
            PRIMARY KEY (kind, key)
        );
        CREATE TABLE kv_nonces (
            nonce       TEXT PRIMARY KEY,
            expires     BIGINT NOT NULL
        );
    ",
        },
        Migration {
            version: 2,
            name: "epoch changes in order, for the gateways that follow them",
            sqlite: "
        ALTER TABLE kv_epochs ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
        UPDATE kv_epochs SET changed = rowid;
        CREATE INDEX kv_epochs_changed ON kv_epochs (changed);
    ",
            postgres: "
        ALTER TABLE kv_epochs ADD COLUMN changed BIGINT NOT NULL DEFAULT 0;
        UPDATE kv_epochs SET changed = n.n
            FROM (SELECT namespace, row_number() OVER (ORDER BY namespace) AS n FROM kv_epochs) n
            WHERE kv_epochs.namespace = n.namespace;
        CREATE INDEX kv_epochs_changed ON kv_epochs (changed);
    ",
        },
    ],
    legacy: Some(Legacy {
        last_version: 8,
        adopt_up_to: 1,
        drop_tables: &["function_versions", "functions", "tokens"],
    }),
};
