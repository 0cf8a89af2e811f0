//! The gateway store on SQLite (the embedded default): one file, durable on acknowledge.

use std::path::Path;

use async_trait::async_trait;
use cloister_db::now_rfc3339;
use cloister_db::sqlite::backend;
use cloister_types::{Limits, Role};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::Store;
use crate::migrations::TRACK;
use crate::model::{NewToken, NewVersion, TokenRecord, VersionRecord};
use cloister_db::StoreError;

/// [`Store`] on one SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: cloister_db::sqlite::Shared,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::init(cloister_db::sqlite::open(path)?)
    }

    /// An in-memory database (tests and throwaway runs).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(cloister_db::sqlite::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        cloister_db::migrate::sqlite(&mut conn, &TRACK)?;
        Ok(Self {
            conn: cloister_db::sqlite::Shared::new(conn),
        })
    }

    /// Schema version currently applied.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        self.with(|c| cloister_db::migrate::sqlite_version(c, &TRACK))
            .await
    }

    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.conn.with(f).await
    }
}

const VERSION_COLUMNS: &str = "f.name, f.id, v.version, v.code_hash, v.runtime, v.entrypoint, \
     v.environment, v.required_secrets, v.timeout_ms, v.memory_mb, v.created_at, v.manifest_digest, \
     f.owners, v.env, v.source_name";

/// A version row with its JSON columns still encoded: secrets, owners, env.
type VersionRow = (VersionRecord, String, String, String);

fn version_row(r: &Row<'_>) -> rusqlite::Result<VersionRow> {
    let secrets: String = r.get(7)?;
    let owners: String = r.get(12)?;
    let env: String = r.get(13)?;
    let info = VersionRecord {
        name: r.get(0)?,
        function_id: r.get(1)?,
        version: r.get(2)?,
        code_hash: r.get(3)?,
        runtime: r.get(4)?,
        entrypoint: r.get(5)?,
        environment: r.get(6)?,
        required_secrets: Vec::new(),
        limits: Limits {
            timeout_ms: r.get::<_, i64>(8)?.max(0) as u64,
            memory_mb: r.get(9)?,
        },
        created_at: r.get(10)?,
        manifest_digest: r.get(11)?,
        owners: Vec::new(),
        env: Default::default(),
        source_name: r.get(14)?,
        unchanged: false,
    };
    Ok((info, secrets, owners, env))
}

fn decode_version(
    (mut info, secrets, owners, env): VersionRow,
) -> Result<VersionRecord, StoreError> {
    info.env = serde_json::from_str(&env)
        .map_err(|e| StoreError::Corrupt(format!("env of {}: {e}", info.name)))?;
    info.required_secrets = serde_json::from_str(&secrets)
        .map_err(|e| StoreError::Corrupt(format!("required_secrets of {}: {e}", info.name)))?;
    info.owners = serde_json::from_str(&owners)
        .map_err(|e| StoreError::Corrupt(format!("owners of {}: {e}", info.name)))?;
    Ok(info)
}

type TokenRow = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
);

/// The columns [`token_row`] reads.
const TOKEN_COLUMNS: &str = "id, role, label, created_at, identity, functions";

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn decode_token(
    (id, role, label, created_at, identity, functions): TokenRow,
) -> Result<TokenRecord, StoreError> {
    let role = Role::parse(&role)
        .ok_or_else(|| StoreError::Corrupt(format!("token {id} has role {role:?}")))?;
    let functions = serde_json::from_str(&functions)
        .map_err(|e| StoreError::Corrupt(format!("functions of token {id}: {e}")))?;
    Ok(TokenRecord {
        id,
        role,
        label,
        created_at,
        identity,
        functions,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn function_owners(&self, function_id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let id = function_id.to_owned();
        self.with(move |c| {
            let owners: Option<String> = c
                .query_row("SELECT owners FROM functions WHERE id = ?1", [&id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(backend)?;
            owners
                .map(|o| {
                    serde_json::from_str(&o)
                        .map_err(|e| StoreError::Corrupt(format!("owners of {id}: {e}")))
                })
                .transpose()
        })
        .await
    }

    async fn set_function_owners(
        &self,
        function_id: &str,
        owners: &[String],
    ) -> Result<bool, StoreError> {
        let id = function_id.to_owned();
        let owners = serde_json::to_string(owners)
            .map_err(|e| StoreError::Corrupt(format!("owners of {id}: {e}")))?;
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE functions SET owners = ?2 WHERE id = ?1",
                    params![id, owners],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn rebind_identity(&self, old: &str, new: &str) -> Result<u64, StoreError> {
        let (old, new) = (old.to_owned(), new.to_owned());
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let n = tx
                .execute(
                    "UPDATE tokens SET identity = ?2 WHERE identity = ?1 AND revoked_at IS NULL",
                    params![old, new],
                )
                .map_err(backend)?;
            let rows: Vec<(String, String)> = {
                let mut st = tx
                    .prepare("SELECT id, owners FROM functions")
                    .map_err(backend)?;
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(backend)?
                    .collect::<Result<_, _>>()
                    .map_err(backend)?
            };
            for (id, owners) in rows {
                let mut list: Vec<String> = serde_json::from_str(&owners)
                    .map_err(|e| StoreError::Corrupt(format!("owners of {id}: {e}")))?;
                if !list.contains(&old) {
                    continue;
                }
                list.retain(|o| *o != old);
                if !list.contains(&new) {
                    list.push(new.clone());
                }
                let text = serde_json::to_string(&list)
                    .map_err(|e| StoreError::Corrupt(format!("owners of {id}: {e}")))?;
                tx.execute(
                    "UPDATE functions SET owners = ?2 WHERE id = ?1",
                    params![id, text],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }

    async fn revoke_tokens_of(&self, identity: &str) -> Result<u64, StoreError> {
        let identity = identity.to_owned();
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE tokens SET revoked_at = ?2 WHERE identity = ?1 AND revoked_at IS NULL",
                    params![identity, now_rfc3339()],
                )
                .map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }

    async fn create_version(&self, new: NewVersion) -> Result<VersionRecord, StoreError> {
        self.with(move |c| {
            let secrets = serde_json::to_string(&new.required_secrets)
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            let env_json =
                serde_json::to_string(&new.env).map_err(|e| StoreError::Backend(e.to_string()))?;
            let now = now_rfc3339();
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let existing: Option<String> = tx
                .query_row("SELECT id FROM functions WHERE name = ?1", [&new.name], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            let owners = serde_json::to_string(&new.owners)
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            let function_id = match existing {
                Some(id) => {
                    // A new version is current again (a rollback lasts until the next deploy).
                    tx.execute(
                        "UPDATE functions SET owners = ?2, current_version = NULL WHERE id = ?1",
                        params![id, owners],
                    )
                    .map_err(backend)?;
                    id
                }
                None => {
                    tx.execute(
                        "INSERT INTO functions (id, name, created_at, owners) VALUES (?1, ?2, ?3, ?4)",
                        params![new.new_function_id, new.name, now, owners],
                    )
                    .map_err(backend)?;
                    new.new_function_id.clone()
                }
            };
            let next: u32 = tx
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM function_versions WHERE function_id = ?1",
                    [&function_id],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            let version = match new.version {
                Some(v) if v < next => {
                    return Err(StoreError::Conflict(format!(
                        "version {v} of {} is already stored",
                        new.name
                    )));
                }
                Some(v) => v,
                None => next,
            };
            tx.execute(
                "INSERT INTO function_versions (function_id, version, code, code_hash, runtime, \
                 entrypoint, environment, required_secrets, timeout_ms, memory_mb, created_at, \
                 manifest_digest, env, source_name) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    function_id,
                    version,
                    new.code,
                    new.code_hash,
                    new.runtime,
                    new.entrypoint,
                    new.environment,
                    secrets,
                    i64::try_from(new.limits.timeout_ms).unwrap_or(i64::MAX),
                    new.limits.memory_mb,
                    now,
                    new.manifest_digest,
                    env_json,
                    new.source_name
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(VersionRecord {
                name: new.name,
                function_id,
                version,
                code_hash: new.code_hash,
                runtime: new.runtime,
                entrypoint: new.entrypoint,
                environment: new.environment,
                required_secrets: new.required_secrets,
                limits: new.limits,
                created_at: now,
                manifest_digest: new.manifest_digest,
                owners: new.owners,
                env: new.env,
                source_name: new.source_name,
                unchanged: false,
            })
        })
        .await
    }

    async fn get_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<VersionRecord>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            let row = match version {
                Some(v) => c
                    .query_row(
                        &format!(
                            "SELECT {VERSION_COLUMNS} FROM functions f JOIN function_versions v \
                             ON v.function_id = f.id WHERE f.name = ?1 AND v.version = ?2"
                        ),
                        params![name, v],
                        version_row,
                    )
                    .optional(),
                None => c
                    .query_row(
                        &format!(
                            "SELECT {VERSION_COLUMNS} FROM functions f JOIN function_versions v \
                             ON v.function_id = f.id WHERE f.name = ?1 ORDER BY v.version DESC LIMIT 1"
                        ),
                        params![name],
                        version_row,
                    )
                    .optional(),
            }
            .map_err(backend)?;
            row.map(decode_version).transpose()
        })
        .await
    }

    async fn get_code(
        &self,
        function_id: &str,
        version: u32,
    ) -> Result<Option<String>, StoreError> {
        let id = function_id.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT code FROM function_versions WHERE function_id = ?1 AND version = ?2",
                params![id, version],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn list_latest(&self) -> Result<Vec<VersionRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {VERSION_COLUMNS} FROM functions f JOIN function_versions v \
                     ON v.function_id = f.id \
                     WHERE v.version = (SELECT MAX(version) FROM function_versions WHERE function_id = f.id) \
                     ORDER BY f.name"
                ))
                .map_err(backend)?;
            let rows = stmt.query_map([], version_row).map_err(backend)?;
            rows.map(|r| r.map_err(backend).and_then(decode_version)).collect()
        })
        .await
    }

    async fn get_current(&self, name: &str) -> Result<Option<VersionRecord>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            c.query_row(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM functions f JOIN function_versions v \
                     ON v.function_id = f.id WHERE f.name = ?1 \
                     AND (f.current_version IS NULL OR v.version = f.current_version) \
                     ORDER BY v.version DESC LIMIT 1"
                ),
                params![name],
                version_row,
            )
            .optional()
            .map_err(backend)?
            .map(decode_version)
            .transpose()
        })
        .await
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<VersionRecord>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {VERSION_COLUMNS} FROM functions f JOIN function_versions v \
                     ON v.function_id = f.id WHERE f.name = ?1 ORDER BY v.version"
                ))
                .map_err(backend)?;
            let rows = stmt.query_map([name], version_row).map_err(backend)?;
            rows.map(|r| r.map_err(backend).and_then(decode_version))
                .collect()
        })
        .await
    }

    async fn set_current_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            let n = match version {
                None => c
                    .execute(
                        "UPDATE functions SET current_version = NULL WHERE name = ?1",
                        [name],
                    )
                    .map_err(backend)?,
                Some(v) => c
                    .execute(
                        "UPDATE functions SET current_version = ?2 WHERE name = ?1 AND EXISTS \
                         (SELECT 1 FROM function_versions WHERE function_id = functions.id \
                          AND version = ?2)",
                        params![name, v],
                    )
                    .map_err(backend)?,
            };
            Ok(n > 0)
        })
        .await
    }

    async fn delete_function(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            let n = c
                .execute("DELETE FROM functions WHERE name = ?1", [name])
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn create_token(&self, new: NewToken) -> Result<TokenRecord, StoreError> {
        self.with(move |c| {
            let now = now_rfc3339();
            c.execute(
                "INSERT INTO tokens (id, hash, role, label, created_at, identity, functions) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    new.id,
                    &new.hash[..],
                    new.role.as_str(),
                    new.label,
                    now,
                    new.identity,
                    serde_json::to_string(&new.functions)
                        .map_err(|e| StoreError::Backend(e.to_string()))?
                ],
            )
            .map_err(backend)?;
            Ok(TokenRecord {
                id: new.id,
                role: new.role,
                label: new.label,
                created_at: now,
                identity: new.identity,
                functions: new.functions,
            })
        })
        .await
    }

    async fn find_token(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let hash = *hash;
        self.with(move |c| {
            c.query_row(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_at IS NULL"
                ),
                [&hash[..]],
                token_row,
            )
            .optional()
            .map_err(backend)?
            .map(decode_token)
            .transpose()
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE revoked_at IS NULL \
                     ORDER BY created_at, id"
                ))
                .map_err(backend)?;
            let rows = stmt.query_map([], token_row).map_err(backend)?;
            rows.map(|r| r.map_err(backend).and_then(decode_token))
                .collect()
        })
        .await
    }

    async fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    params![id, now_rfc3339()],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(SqliteStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute(
            "INSERT INTO store_migrations VALUES ('gateway', 999, 'future', 'now')",
            [],
        )
        .unwrap();
        drop(c);
        match SqliteStore::open(&path) {
            Err(StoreError::SchemaTooNew { found: 999, .. }) => {}
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }
}
