//! Versioned schema migrations, one track per store: each step is applied once, in order,
//! inside a transaction, and recorded in `store_migrations` with its track's name. A database
//! written by a newer build is refused rather than guessed at.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{StoreError, now_rfc3339, pg, sqlite::backend};

/// One schema step, written for each backend.
pub struct Migration {
    /// Sequential number within its track, starting at 1.
    pub version: u32,
    /// What it does, for the migrations table.
    pub name: &'static str,
    /// The step on SQLite.
    pub sqlite: &'static str,
    /// The step on PostgreSQL (inside the store's schema).
    pub postgres: &'static str,
}

/// The migrations of one store.
pub struct Track {
    /// Name recorded beside each applied version (`gateway`, `vault`).
    pub name: &'static str,
    /// Every migration, in order. Never edit a released entry: append a new one.
    pub migrations: &'static [Migration],
    /// How to take over an SQLite file of the layout where one database held every role.
    pub legacy: Option<Legacy>,
}

/// The single-database layout of earlier builds (`schema_migrations`, up to `last_version`):
/// such a file is taken over by recording this track's versions up to `adopt_up_to` as
/// applied and dropping the other store's tables.
pub struct Legacy {
    /// The version every earlier build ended at; an older file must first be opened by one.
    pub last_version: u32,
    /// This track's versions whose tables the legacy file already has.
    pub adopt_up_to: u32,
    /// Tables of the other store, dropped on take-over.
    pub drop_tables: &'static [&'static str],
}

impl Track {
    /// Latest version this build knows.
    pub fn latest(&self) -> u32 {
        self.migrations.last().map(|m| m.version).unwrap_or(0)
    }
}

const SQLITE_TABLE: &str = "CREATE TABLE IF NOT EXISTS store_migrations (
    track TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL,
    PRIMARY KEY (track, version))";

/// Version of `track` applied to an SQLite database (0: none).
pub fn sqlite_version(conn: &Connection, track: &Track) -> Result<u32, StoreError> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM store_migrations WHERE track = ?1",
        [track.name],
        |r| r.get(0),
    )
    .map_err(backend)
}

/// Brings an SQLite database to `track`'s latest version.
pub fn sqlite(conn: &mut Connection, track: &Track) -> Result<(), StoreError> {
    conn.execute_batch(SQLITE_TABLE).map_err(backend)?;
    adopt_legacy(conn, track)?;
    let found = sqlite_version(conn, track)?;
    if found > track.latest() {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: track.latest(),
        });
    }
    for m in track.migrations.iter().filter(|m| m.version > found) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        tx.execute_batch(m.sqlite).map_err(backend)?;
        tx.execute(
            "INSERT INTO store_migrations (track, version, name, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![track.name, m.version, m.name, now_rfc3339()],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(
            track = track.name,
            version = m.version,
            name = m.name,
            "applied schema migration"
        );
    }
    Ok(())
}

fn adopt_legacy(conn: &mut Connection, track: &Track) -> Result<(), StoreError> {
    let Some(legacy) = &track.legacy else {
        return Ok(());
    };
    let has_legacy: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    if has_legacy.is_none() || sqlite_version(conn, track)? > 0 {
        return Ok(());
    }
    let found: u32 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if found != legacy.last_version {
        return Err(StoreError::Corrupt(format!(
            "this file has the single-database layout at version {found}; only version {} \
             can be split (open it once with the previous release first)",
            legacy.last_version
        )));
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    for t in legacy.drop_tables {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {t}"))
            .map_err(backend)?;
    }
    for m in track
        .migrations
        .iter()
        .filter(|m| m.version <= legacy.adopt_up_to)
    {
        tx.execute(
            "INSERT INTO store_migrations (track, version, name, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                track.name,
                m.version,
                format!("{} (taken over from the single-database layout)", m.name),
                now_rfc3339()
            ],
        )
        .map_err(backend)?;
    }
    tx.execute_batch("DROP TABLE schema_migrations")
        .map_err(backend)?;
    tx.commit().map_err(backend)?;
    tracing::info!(
        track = track.name,
        "took over a database of the single-database layout"
    );
    Ok(())
}

/// Brings the PostgreSQL schema `schema` to `track`'s latest version, creating the schema if
/// needed. Concurrent starters (several gateways, keyvault replicas) take turns on an
/// advisory lock, and DDL is transactional: a step is applied fully or not at all.
pub async fn postgres(
    pool: &deadpool_postgres::Pool,
    schema: &str,
    track: &Track,
) -> Result<u32, StoreError> {
    if !crate::location::valid_schema(schema) {
        return Err(StoreError::Backend(format!("invalid schema {schema:?}")));
    }
    let mut client = pg::connection(pool).await?;
    let tx = client.transaction().await.map_err(pg::pg_error)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(7263, hashtext($1))",
        &[&schema],
    )
    .await
    .map_err(pg::pg_error)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path = {schema};
         CREATE TABLE IF NOT EXISTS store_migrations (
            track TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,
            applied_at TEXT NOT NULL, PRIMARY KEY (track, version));"
    ))
    .await
    .map_err(pg::pg_error)?;
    let found: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM store_migrations WHERE track = $1",
            &[&track.name],
        )
        .await
        .map_err(pg::pg_error)?
        .get(0);
    let found = u32::try_from(found).unwrap_or(0);
    if found > track.latest() {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: track.latest(),
        });
    }
    for m in track.migrations.iter().filter(|m| m.version > found) {
        tx.batch_execute(m.postgres).await.map_err(pg::pg_error)?;
        let v = i32::try_from(m.version).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO store_migrations (track, version, name, applied_at) VALUES ($1, $2, $3, $4)",
            &[&track.name, &v, &m.name, &now_rfc3339()],
        )
        .await
        .map_err(pg::pg_error)?;
        tracing::info!(
            track = track.name,
            schema,
            version = m.version,
            name = m.name,
            "applied schema migration"
        );
    }
    tx.commit().await.map_err(pg::pg_error)?;
    Ok(track.latest())
}
