//! The gateway store on PostgreSQL: several gateways share one schema. Writes that must not
//! race (a function's next version number, owner lists) lock the function's row for the
//! length of their transaction; everything else is a single statement.

use async_trait::async_trait;
use cloister_db::pg::{connection, pg_error};
use cloister_db::{PgLocation, StoreError, now_rfc3339};
use cloister_types::{Limits, Role};
use deadpool_postgres::Pool;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::Store;
use crate::migrations::TRACK;
use crate::model::{NewToken, NewVersion, TokenRecord, VersionRecord};

/// [`Store`] on a PostgreSQL schema.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

const VERSION_COLUMNS: &str = "f.name, f.id, v.version, v.code_hash, v.runtime, v.entrypoint, \
     v.environment, v.required_secrets, v.timeout_ms, v.memory_mb, v.created_at, v.manifest_digest, \
     f.owners, v.env, v.source_name";

const TOKEN_COLUMNS: &str = "id, role, label, created_at, identity, functions";

fn json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()))
}

fn small(n: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} is {n}")))
}

fn version_row(r: &Row) -> Result<VersionRecord, StoreError> {
    let name: String = r.try_get(0).map_err(pg_error)?;
    let get = |i: usize| -> Result<String, StoreError> { r.try_get(i).map_err(pg_error) };
    let num = |i: usize| -> Result<i64, StoreError> { r.try_get(i).map_err(pg_error) };
    Ok(VersionRecord {
        function_id: get(1)?,
        version: small(num(2)?, "a version number")?,
        code_hash: get(3)?,
        runtime: get(4)?,
        entrypoint: get(5)?,
        environment: get(6)?,
        required_secrets: json(&get(7)?, &format!("required_secrets of {name}"))?,
        limits: Limits {
            timeout_ms: u64::try_from(num(8)?).unwrap_or(0),
            memory_mb: small(num(9)?, "memory_mb")?,
        },
        created_at: get(10)?,
        manifest_digest: get(11)?,
        owners: json(&get(12)?, &format!("owners of {name}"))?,
        env: json(&get(13)?, &format!("env of {name}"))?,
        source_name: r.try_get(14).map_err(pg_error)?,
        unchanged: false,
        name,
    })
}

fn token_row(r: &Row) -> Result<TokenRecord, StoreError> {
    let id: String = r.try_get(0).map_err(pg_error)?;
    let role: String = r.try_get(1).map_err(pg_error)?;
    let functions: String = r.try_get(5).map_err(pg_error)?;
    Ok(TokenRecord {
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("token {id} has role {role:?}")))?,
        label: r.try_get(2).map_err(pg_error)?,
        created_at: r.try_get(3).map_err(pg_error)?,
        identity: r.try_get(4).map_err(pg_error)?,
        functions: json(&functions, &format!("functions of token {id}"))?,
        id,
    })
}

impl PgStore {
    /// Connects to `loc` and applies pending migrations (several gateways may start at once).
    pub async fn connect(loc: &PgLocation) -> Result<Self, StoreError> {
        let pool = cloister_db::pg::pool(loc)?;
        cloister_db::migrate::postgres(&pool, &loc.schema, &TRACK).await?;
        Ok(Self { pool })
    }

    /// Schema version currently applied.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        let rows = self
            .query(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM store_migrations WHERE track = $1",
                &[&TRACK.name],
            )
            .await?;
        let v: i64 = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg_error)?
            .unwrap_or(0);
        small(v, "the schema version")
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let c = connection(&self.pool).await?;
        let st = c.prepare_cached(sql).await.map_err(pg_error)?;
        c.query(&st, params).await.map_err(pg_error)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let c = connection(&self.pool).await?;
        let st = c.prepare_cached(sql).await.map_err(pg_error)?;
        c.execute(&st, params).await.map_err(pg_error)
    }

    async fn versions(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<VersionRecord>, StoreError> {
        self.query(sql, params)
            .await?
            .iter()
            .map(version_row)
            .collect()
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_version(&self, new: NewVersion) -> Result<VersionRecord, StoreError> {
        let secrets = to_json(&new.required_secrets)?;
        let env_json = to_json(&new.env)?;
        let owners = to_json(&new.owners)?;
        let now = now_rfc3339();
        let mut c = connection(&self.pool).await?;
        let tx = c.transaction().await.map_err(pg_error)?;
        // Concurrent deploys of one name (from any gateway) take turns on the function's row,
        // locked until commit, and each sees the versions committed before it. DO NOTHING
        // covers both unique keys: two first deploys of a name carry the same keyvault-assigned
        // id.
        tx.execute(
            "INSERT INTO functions (id, name, created_at, owners) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            &[&new.new_function_id, &new.name, &now, &owners],
        )
        .await
        .map_err(pg_error)?;
        let row = tx
            .query_opt(
                "SELECT id FROM functions WHERE name = $1 FOR UPDATE",
                &[&new.name],
            )
            .await
            .map_err(pg_error)?
            .ok_or_else(|| {
                StoreError::Conflict(format!(
                    "function id {} belongs to another function",
                    new.new_function_id
                ))
            })?;
        let function_id: String = row.try_get(0).map_err(pg_error)?;
        // A new version is current again (a rollback lasts until the next deploy).
        tx.execute(
            "UPDATE functions SET owners = $2, current_version = NULL WHERE id = $1",
            &[&function_id, &owners],
        )
        .await
        .map_err(pg_error)?;
        let next: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM function_versions WHERE function_id = $1",
                &[&function_id],
            )
            .await
            .map_err(pg_error)?
            .try_get(0)
            .map_err(pg_error)?;
        let version = match new.version {
            Some(v) if i64::from(v) < next => {
                return Err(StoreError::Conflict(format!(
                    "version {v} of {} is already stored",
                    new.name
                )));
            }
            Some(v) => v,
            None => small(next, "the next version")?,
        };
        tx.execute(
            "INSERT INTO function_versions (function_id, version, code, code_hash, runtime, \
             entrypoint, environment, required_secrets, timeout_ms, memory_mb, created_at, \
             manifest_digest, env, source_name) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            &[
                &function_id,
                &i64::from(version),
                &new.code,
                &new.code_hash,
                &new.runtime,
                &new.entrypoint,
                &new.environment,
                &secrets,
                &cloister_db::to_i64(new.limits.timeout_ms),
                &i64::from(new.limits.memory_mb),
                &now,
                &new.manifest_digest,
                &env_json,
                &new.source_name,
            ],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
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
    }

    async fn get_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<VersionRecord>, StoreError> {
        let rows = match version {
            Some(v) => {
                self.versions(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM functions f JOIN function_versions v \
                         ON v.function_id = f.id WHERE f.name = $1 AND v.version = $2"
                    ),
                    &[&name, &i64::from(v)],
                )
                .await?
            }
            None => {
                self.versions(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM functions f JOIN function_versions v \
                         ON v.function_id = f.id WHERE f.name = $1 ORDER BY v.version DESC LIMIT 1"
                    ),
                    &[&name],
                )
                .await?
            }
        };
        Ok(rows.into_iter().next())
    }

    async fn get_current(&self, name: &str) -> Result<Option<VersionRecord>, StoreError> {
        Ok(self
            .versions(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM functions f JOIN function_versions v \
                     ON v.function_id = f.id WHERE f.name = $1 \
                     AND (f.current_version IS NULL OR v.version = f.current_version) \
                     ORDER BY v.version DESC LIMIT 1"
                ),
                &[&name],
            )
            .await?
            .into_iter()
            .next())
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<VersionRecord>, StoreError> {
        self.versions(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM functions f JOIN function_versions v \
                 ON v.function_id = f.id WHERE f.name = $1 ORDER BY v.version"
            ),
            &[&name],
        )
        .await
    }

    async fn set_current_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<bool, StoreError> {
        let n = match version {
            None => {
                self.execute(
                    "UPDATE functions SET current_version = NULL WHERE name = $1",
                    &[&name],
                )
                .await?
            }
            Some(v) => {
                self.execute(
                    "UPDATE functions SET current_version = $2 WHERE name = $1 AND EXISTS \
                     (SELECT 1 FROM function_versions WHERE function_id = functions.id \
                      AND version = $2)",
                    &[&name, &i64::from(v)],
                )
                .await?
            }
        };
        Ok(n > 0)
    }

    async fn get_code(
        &self,
        function_id: &str,
        version: u32,
    ) -> Result<Option<String>, StoreError> {
        let rows = self
            .query(
                "SELECT code FROM function_versions WHERE function_id = $1 AND version = $2",
                &[&function_id, &i64::from(version)],
            )
            .await?;
        rows.first()
            .map(|r| r.try_get(0).map_err(pg_error))
            .transpose()
    }

    async fn list_latest(&self) -> Result<Vec<VersionRecord>, StoreError> {
        self.versions(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM functions f JOIN function_versions v \
                 ON v.function_id = f.id \
                 WHERE v.version = (SELECT MAX(version) FROM function_versions WHERE function_id = f.id) \
                 ORDER BY f.name"
            ),
            &[],
        )
        .await
    }

    async fn delete_function(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .execute("DELETE FROM functions WHERE name = $1", &[&name])
            .await?
            > 0)
    }

    async fn create_token(&self, new: NewToken) -> Result<TokenRecord, StoreError> {
        let now = now_rfc3339();
        let functions = to_json(&new.functions)?;
        self.execute(
            "INSERT INTO tokens (id, hash, role, label, created_at, identity, functions) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &new.id,
                &&new.hash[..],
                &new.role.as_str(),
                &new.label,
                &now,
                &new.identity,
                &functions,
            ],
        )
        .await?;
        Ok(TokenRecord {
            id: new.id,
            role: new.role,
            label: new.label,
            created_at: now,
            identity: new.identity,
            functions: new.functions,
        })
    }

    async fn find_token(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1 AND revoked_at IS NULL"
                ),
                &[&&hash[..]],
            )
            .await?;
        rows.first().map(token_row).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.query(
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE revoked_at IS NULL ORDER BY created_at, id"
            ),
            &[],
        )
        .await?
        .iter()
        .map(token_row)
        .collect()
    }

    async fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .execute(
                "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now_rfc3339()],
            )
            .await?
            > 0)
    }

    async fn function_owners(&self, function_id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let rows = self
            .query(
                "SELECT owners FROM functions WHERE id = $1",
                &[&function_id],
            )
            .await?;
        rows.first()
            .map(|r| {
                let o: String = r.try_get(0).map_err(pg_error)?;
                json(&o, &format!("owners of {function_id}"))
            })
            .transpose()
    }

    async fn set_function_owners(
        &self,
        function_id: &str,
        owners: &[String],
    ) -> Result<bool, StoreError> {
        let owners = to_json(&owners)?;
        Ok(self
            .execute(
                "UPDATE functions SET owners = $2 WHERE id = $1",
                &[&function_id, &owners],
            )
            .await?
            > 0)
    }

    async fn rebind_identity(&self, old: &str, new: &str) -> Result<u64, StoreError> {
        let mut c = connection(&self.pool).await?;
        let tx = c.transaction().await.map_err(pg_error)?;
        let n = tx
            .execute(
                "UPDATE tokens SET identity = $2 WHERE identity = $1 AND revoked_at IS NULL",
                &[&old, &new],
            )
            .await
            .map_err(pg_error)?;
        let rows = tx
            .query(
                "SELECT id, owners FROM functions WHERE owners LIKE '%' || $1 || '%' FOR UPDATE",
                &[&old],
            )
            .await
            .map_err(pg_error)?;
        for r in rows {
            let id: String = r.try_get(0).map_err(pg_error)?;
            let owners: String = r.try_get(1).map_err(pg_error)?;
            let mut list: Vec<String> = json(&owners, &format!("owners of {id}"))?;
            if !list.iter().any(|o| o == old) {
                continue;
            }
            list.retain(|o| o != old);
            if !list.iter().any(|o| o == new) {
                list.push(new.to_owned());
            }
            tx.execute(
                "UPDATE functions SET owners = $2 WHERE id = $1",
                &[&id, &to_json(&list)?],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(n)
    }

    async fn revoke_tokens_of(&self, identity: &str) -> Result<u64, StoreError> {
        self.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE identity = $1 AND revoked_at IS NULL",
            &[&identity, &now_rfc3339()],
        )
        .await
    }
}
