//! keyvault's store on PostgreSQL: [`VaultStore`] and [`AuditLog`] here, [`AuthorityStore`]
//! in `postgres_authority`. Every write transaction first takes one transaction-scoped
//! advisory lock, so writers from every keyvault process take turns exactly as SQLite's
//! `IMMEDIATE` transactions do: compare-and-set checks and the audit chain's head cannot race,
//! and a crash releases the lock with the connection.

use std::sync::Arc;

use async_trait::async_trait;
use cloister_audit::{AuditDraft, AuditEntry, Checkpoint, GENESIS_HASH};
use cloister_db::pg::{connection, pg_error};
use cloister_db::{PgLocation, StoreError, now_rfc3339, to_i64, to_u64};
use deadpool_postgres::{Object, Pool, Transaction};
use tokio_postgres::Row;

use crate::audit::{AuditKeeper, AuditLog, AuditMac};
use crate::authority::AuthorityWrite;
use crate::migrations::TRACK;
use crate::postgres_authority::apply_writes;
use crate::vault::{
    DekRecord, EpochChange, MekRecord, RootRecord, SecretPut, SecretRecord, SecretSummary,
    SecretVersionInfo, VaultStore,
};

/// The class of the advisory lock every vault write transaction holds (its key: the schema).
const WRITE_LOCK_CLASS: i32 = 7264;

/// keyvault's store on a PostgreSQL schema.
#[derive(Clone)]
pub struct PgVault {
    pool: Pool,
    keeper: Arc<std::sync::OnceLock<Arc<AuditKeeper>>>,
    /// One write transaction of this process at a time (the database lock orders them
    /// between processes; this keeps the keeper's staged head per transaction).
    writing: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for PgVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgVault").finish_non_exhaustive()
    }
}

fn conflict(msg: impl Into<String>) -> StoreError {
    StoreError::Conflict(msg.into())
}

pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    r: &'a Row,
    i: usize,
) -> Result<T, StoreError> {
    r.try_get(i).map_err(pg_error)
}

fn small(n: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} is {n}")))
}

fn mek_row(r: &Row) -> Result<MekRecord, StoreError> {
    Ok(MekRecord {
        id: get(r, 0)?,
        kek_id: get(r, 1)?,
        wrapped: get(r, 2)?,
        active: get(r, 3)?,
        created_at: get(r, 4)?,
    })
}

fn dek_row(r: &Row) -> Result<DekRecord, StoreError> {
    Ok(DekRecord {
        namespace: get(r, 0)?,
        version: small(get(r, 1)?, "a DEK version")?,
        id: get(r, 2)?,
        mek_id: get(r, 3)?,
        wrapped: get(r, 4)?,
        created_at: get(r, 5)?,
    })
}

const SECRET_COLUMNS: &str = "path, version, namespace, dek_version, ciphertext, created_at";

fn secret_row(r: &Row) -> Result<SecretRecord, StoreError> {
    Ok(SecretRecord {
        path: get(r, 0)?,
        version: to_u64(get(r, 1)?),
        namespace: get(r, 2)?,
        dek_version: small(get(r, 3)?, "a DEK version")?,
        ciphertext: get(r, 4)?,
        created_at: get(r, 5)?,
    })
}

fn entry_row(r: &Row) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: to_u64(get(r, 0)?),
        at: get(r, 1)?,
        actor: get(r, 2)?,
        action: get(r, 3)?,
        subject: get(r, 4)?,
        details: get(r, 5)?,
        prev_hash: get(r, 6)?,
        hash: get(r, 7)?,
        mac: get(r, 8)?,
    })
}

/// Begins a write transaction holding the vault's write lock.
pub(crate) async fn begin_write(c: &mut Object) -> Result<Transaction<'_>, StoreError> {
    let tx = c.transaction().await.map_err(pg_error)?;
    // One lock per schema: keyvaults of other deployments in the same database do not wait.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&WRITE_LOCK_CLASS],
    )
    .await
    .map_err(pg_error)?;
    Ok(tx)
}

/// Appends `draft` inside the caller's write transaction.
pub(crate) async fn append_in(
    tx: &Transaction<'_>,
    draft: AuditDraft,
    keeper: Option<&AuditKeeper>,
) -> Result<AuditEntry, StoreError> {
    let st = tx
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .await
        .map_err(pg_error)?;
    let head: Option<(i64, String)> = match tx.query_opt(&st, &[]).await.map_err(pg_error)? {
        Some(r) => Some((get(&r, 0)?, get(&r, 1)?)),
        None => None,
    };
    if let Some(k) = keeper {
        k.check(head.as_ref().map(|(s, h)| (to_u64(*s), h.as_str())))?;
    }
    let (seq, prev) = match head {
        Some((seq, hash)) => {
            let prev: [u8; 32] = hex::decode(&hash)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt(format!("audit entry {seq} hash")))?;
            (to_u64(seq) + 1, prev)
        }
        None => (1, GENESIS_HASH),
    };
    let mut e = draft.chain(seq, now_rfc3339(), prev);
    if let Some(k) = keeper {
        e.mac = (k.mac)(&e.hash);
        k.stage(e.seq, e.hash.clone());
    }
    let st = tx
        .prepare_cached(
            "INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash, mac) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(
        &st,
        &[
            &to_i64(e.seq),
            &e.at,
            &e.actor,
            &e.action,
            &e.subject,
            &e.details,
            &e.prev_hash,
            &e.hash,
            &e.mac,
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(e)
}

/// Bumps a namespace's change counter (inside a write transaction: the store-wide change
/// number is the next after the largest).
pub(crate) async fn bump_epoch(tx: &Transaction<'_>, namespace: &str) -> Result<(), StoreError> {
    let st = tx
        .prepare_cached(
            "INSERT INTO kv_epochs (namespace, epoch, changed) \
             VALUES ($1, 1, (SELECT COALESCE(MAX(changed), 0) + 1 FROM kv_epochs)) \
             ON CONFLICT (namespace) DO UPDATE SET epoch = kv_epochs.epoch + 1, \
             changed = EXCLUDED.changed",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(&st, &[&namespace]).await.map_err(pg_error)?;
    Ok(())
}

async fn latest_dek_version(tx: &Transaction<'_>, namespace: &str) -> Result<u32, StoreError> {
    let r = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM kv_deks WHERE namespace = $1",
            &[&namespace],
        )
        .await
        .map_err(pg_error)?;
    small(get(&r, 0)?, "a DEK version")
}

async fn next_secret_version(
    c: &impl tokio_postgres::GenericClient,
    path: &str,
) -> Result<u64, StoreError> {
    let r = c
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT + 1 FROM kv_secrets WHERE path = $1",
            &[&path],
        )
        .await
        .map_err(pg_error)?;
    Ok(to_u64(get(&r, 0)?))
}

async fn count(tx: &Transaction<'_>, sql: &str, p: &str) -> Result<u64, StoreError> {
    let r = if p.is_empty() {
        tx.query_one(sql, &[]).await
    } else {
        tx.query_one(sql, &[&p]).await
    }
    .map_err(pg_error)?;
    Ok(to_u64(get(&r, 0)?))
}

/// One put inside the caller's write transaction (see the SQLite backend's `put_in`).
async fn put_in(
    tx: &Transaction<'_>,
    put: SecretPut,
    keeper: Option<&AuditKeeper>,
) -> Result<String, StoreError> {
    let SecretPut {
        secret,
        mut audit,
        extra,
    } = put;
    crate::authority::record_rows(&mut audit, &extra);
    if next_secret_version(&**tx, &secret.path).await? > secret.version {
        return Err(conflict(format!(
            "{} got a new version meanwhile",
            secret.path
        )));
    }
    if latest_dek_version(tx, &secret.namespace).await? != secret.dek_version {
        return Err(conflict(format!(
            "the DEK of {} changed meanwhile",
            secret.namespace
        )));
    }
    let now = now_rfc3339();
    let st = tx
        .prepare_cached(&format!(
            "INSERT INTO kv_secrets ({SECRET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .await
        .map_err(pg_error)?;
    tx.execute(
        &st,
        &[
            &secret.path,
            &to_i64(secret.version),
            &secret.namespace,
            &i64::from(secret.dek_version),
            &secret.ciphertext,
            &now,
        ],
    )
    .await
    .map_err(pg_error)?;
    apply_writes(tx, extra, &now).await?;
    bump_epoch(tx, &secret.namespace).await?;
    append_in(tx, audit, keeper).await?;
    Ok(now)
}

impl PgVault {
    /// Connects to `loc` and applies pending migrations (several replicas may start at once).
    pub async fn connect(loc: &PgLocation) -> Result<Self, StoreError> {
        let pool = cloister_db::pg::pool(loc)?;
        cloister_db::migrate::postgres(&pool, &loc.schema, &TRACK).await?;
        Ok(Self {
            pool,
            keeper: Arc::new(std::sync::OnceLock::new()),
            writing: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    pub(crate) async fn conn(&self) -> Result<Object, StoreError> {
        connection(&self.pool).await
    }

    /// Runs one write transaction: `body` gets the connection, returns after committing; the
    /// keeper learns whether its staged head committed.
    pub(crate) async fn write<T, F>(&self, body: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(
            &'c mut Object,
            Option<&'c AuditKeeper>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'c>,
        >,
    {
        let _turn = self.writing.lock().await;
        let keeper = self.keeper.get().cloned();
        if let Some(k) = &keeper {
            k.begin();
        }
        let mut c = self.conn().await?;
        let r = body(&mut c, keeper.as_deref()).await;
        if let Some(k) = &keeper {
            k.finish(r.is_ok());
        }
        r
    }

    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let c = self.conn().await?;
        let st = c.prepare_cached(sql).await.map_err(pg_error)?;
        c.query(&st, params).await.map_err(pg_error)
    }
}

#[async_trait]
impl VaultStore for PgVault {
    async fn vault_root(&self) -> Result<Option<RootRecord>, StoreError> {
        let rows = self
            .rows(
                "SELECT root_id, measurement, sealed, recovery, created_at FROM kv_root",
                &[],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(RootRecord {
                    root_id: get(r, 0)?,
                    measurement: get(r, 1)?,
                    sealed: get(r, 2)?,
                    recovery: get(r, 3)?,
                    created_at: get(r, 4)?,
                })
            })
            .transpose()
    }

    async fn vault_init(
        &self,
        root: RootRecord,
        mek: MekRecord,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        self.write(move |c, keeper| {
            Box::pin(async move {
                let tx = begin_write(c).await?;
                let now = now_rfc3339();
                let n = tx
                    .execute(
                        "INSERT INTO kv_root \
                         (singleton, root_id, measurement, sealed, recovery, created_at, updated_at) \
                         VALUES (1, $1, $2, $3, $4, $5, $5) ON CONFLICT (singleton) DO NOTHING",
                        &[&root.root_id, &root.measurement, &root.sealed, &root.recovery, &now],
                    )
                    .await
                    .map_err(pg_error)?;
                if n == 0 {
                    return Err(conflict("the vault is already initialised"));
                }
                tx.execute(
                    "INSERT INTO kv_meks (id, kek_id, wrapped, active, created_at) \
                     VALUES ($1, $2, $3, TRUE, $4)",
                    &[&mek.id, &mek.kek_id, &mek.wrapped, &now],
                )
                .await
                .map_err(pg_error)?;
                append_in(&tx, audit, keeper).await?;
                tx.commit().await.map_err(pg_error)
            })
        })
        .await
    }

    async fn vault_reseal(
        &self,
        measurement: String,
        sealed: Vec<u8>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        self.write(move |c, keeper| {
            Box::pin(async move {
                let tx = begin_write(c).await?;
                let n = tx
                    .execute(
                        "UPDATE kv_root SET measurement = $1, sealed = $2, updated_at = $3",
                        &[&measurement, &sealed, &now_rfc3339()],
                    )
                    .await
                    .map_err(pg_error)?;
                if n != 1 {
                    return Err(conflict("the vault is not initialised"));
                }
                append_in(&tx, audit, keeper).await?;
                tx.commit().await.map_err(pg_error)
            })
        })
        .await
    }

    async fn vault_meks(&self) -> Result<Vec<MekRecord>, StoreError> {
        self.rows(
            "SELECT id, kek_id, wrapped, active, created_at FROM kv_meks ORDER BY created_at",
            &[],
        )
        .await?
        .iter()
        .map(mek_row)
        .collect()
    }

    async fn vault_deks(&self, namespace: Option<String>) -> Result<Vec<DekRecord>, StoreError> {
        self.rows(
            "SELECT namespace, version, id, mek_id, wrapped, created_at FROM kv_deks \
             WHERE $1::TEXT IS NULL OR namespace = $1 ORDER BY namespace, version",
            &[&namespace],
        )
        .await?
        .iter()
        .map(dek_row)
        .collect()
    }

    async fn vault_add_dek(&self, dek: DekRecord) -> Result<(), StoreError> {
        self.write(move |c, _| {
            Box::pin(async move {
                let tx = begin_write(c).await?;
                if latest_dek_version(&tx, &dek.namespace).await? != 0 || dek.version != 1 {
                    return Err(conflict(format!(
                        "namespace {} already has a DEK",
                        dek.namespace
                    )));
                }
                tx.execute(
                    "INSERT INTO kv_deks (namespace, version, id, mek_id, wrapped, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &dek.namespace,
                        &i64::from(dek.version),
                        &dek.id,
                        &dek.mek_id,
                        &dek.wrapped,
                        &now_rfc3339(),
                    ],
                )
                .await
                .map_err(pg_error)?;
                tx.commit().await.map_err(pg_error)
            })
        })
        .await
    }

    async fn vault_rotate_mek(
        &self,
        mek: MekRecord,
        rewrapped: Vec<DekRecord>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        self.write(move |c, keeper| {
            Box::pin(async move {
                let tx = begin_write(c).await?;
                if count(&tx, "SELECT COUNT(*) FROM kv_deks", "").await? != rewrapped.len() as u64 {
                    return Err(conflict("DEKs changed during MEK rotation"));
                }
                tx.execute("UPDATE kv_meks SET active = FALSE", &[])
                    .await
                    .map_err(pg_error)?;
                tx.execute(
                    "INSERT INTO kv_meks (id, kek_id, wrapped, active, created_at) \
                     VALUES ($1, $2, $3, TRUE, $4)",
                    &[&mek.id, &mek.kek_id, &mek.wrapped, &now_rfc3339()],
                )
                .await
                .map_err(pg_error)?;
                for d in &rewrapped {
                    let n = tx
                        .execute(
                            "UPDATE kv_deks SET mek_id = $1, wrapped = $2 \
                             WHERE namespace = $3 AND version = $4 AND id = $5",
                            &[
                                &mek.id,
                                &d.wrapped,
                                &d.namespace,
                                &i64::from(d.version),
                                &d.id,
                            ],
                        )
                        .await
                        .map_err(pg_error)?;
                    if n != 1 {
                        return Err(conflict(format!(
                            "DEK {}/{} changed during MEK rotation",
                            d.namespace, d.version
                        )));
                    }
                }
                append_in(&tx, audit, keeper).await?;
                tx.commit().await.map_err(pg_error)
            })
        })
        .await
    }

    async fn vault_rotate_dek(
        &self,
        dek: DekRecord,
        reencrypted: Vec<SecretRecord>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        self.write(move |c, keeper| {
            Box::pin(async move {
                let tx = begin_write(c).await?;
                if latest_dek_version(&tx, &dek.namespace).await? + 1 != dek.version {
                    return Err(conflict(format!(
                        "the DEK of {} changed meanwhile",
                        dek.namespace
                    )));
                }
                let total = count(
                    &tx,
                    "SELECT COUNT(*) FROM kv_secrets WHERE namespace = $1",
                    &dek.namespace,
                )
                .await?;
                if total != reencrypted.len() as u64 {
                    return Err(conflict(format!(
                        "secrets of {} changed during rotation",
                        dek.namespace
                    )));
                }
                tx.execute(
                    "INSERT INTO kv_deks (namespace, version, id, mek_id, wrapped, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &dek.namespace,
                        &i64::from(dek.version),
                        &dek.id,
                        &dek.mek_id,
                        &dek.wrapped,
                        &now_rfc3339(),
                    ],
                )
                .await
                .map_err(pg_error)?;
                for s in &reencrypted {
                    let n = tx
                        .execute(
                            "UPDATE kv_secrets SET dek_version = $1, ciphertext = $2 \
                             WHERE path = $3 AND version = $4 AND namespace = $5",
                            &[
                                &i64::from(dek.version),
                                &s.ciphertext,
                                &s.path,
                                &to_i64(s.version),
                                &dek.namespace,
                            ],
                        )
                        .await
                        .map_err(pg_error)?;
                    if n != 1 {
                        return Err(conflict(format!(
                            "{} v{} changed during rotation",
                            s.path, s.version
                        )));
                    }
                }
                bump_epoch(&tx, &dek.namespace).await?;
                append_in(&tx, audit, keeper).await?;
                tx.commit().await.map_err(pg_error)
            })
        })
        .await
    }

    async fn vault_next_version(&self, path: String) -> Result<u64, StoreError> {
        let c = self.conn().await?;
        next_secret_version(&**c, &path).await
    }

    async fn vault_next_versions(&self, paths: Vec<String>) -> Result<Vec<u64>, StoreError> {
        let mut max: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for r in self
            .rows(
                "SELECT path, MAX(version) FROM kv_secrets WHERE path = ANY($1) GROUP BY path",
                &[&paths],
            )
            .await?
        {
            max.insert(get(&r, 0)?, to_u64(get(&r, 1)?));
        }
        Ok(paths
            .iter()
            .map(|p| max.get(p).copied().unwrap_or(0) + 1)
            .collect())
    }

    async fn vault_put_secrets(&self, puts: Vec<SecretPut>) -> Result<Vec<String>, StoreError> {
        if puts.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |c, keeper| {
            Box::pin(async move {
                let tx = begin_write(c).await?;
                let times = if puts.len() == 1 {
                    let mut times = Vec::with_capacity(1);
                    for put in puts {
                        times.push(put_in(&tx, put, keeper).await?);
                    }
                    times
                } else {
                    crate::postgres_batch::put_many_in(&tx, puts, keeper).await?
                };
                tx.commit().await.map_err(pg_error)?;
                Ok(times)
            })
        })
        .await
    }

    async fn vault_latest(&self, paths: Vec<String>) -> Result<Vec<SecretRecord>, StoreError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        self.rows(
            &format!(
                "SELECT DISTINCT ON (path) {SECRET_COLUMNS} FROM kv_secrets \
                 WHERE path = ANY($1) ORDER BY path, version DESC"
            ),
            &[&paths],
        )
        .await?
        .iter()
        .map(secret_row)
        .collect::<Result<Vec<_>, _>>()
        .map(|mut found| {
            // In the order asked, like the other backends.
            found.sort_by_key(|r| paths.iter().position(|p| *p == r.path));
            found
        })
    }

    async fn vault_records(&self, path: String) -> Result<Vec<SecretRecord>, StoreError> {
        self.rows(
            &format!("SELECT {SECRET_COLUMNS} FROM kv_secrets WHERE path = $1 ORDER BY version"),
            &[&path],
        )
        .await?
        .iter()
        .map(secret_row)
        .collect()
    }

    async fn vault_namespace_secrets(
        &self,
        namespace: String,
    ) -> Result<Vec<SecretRecord>, StoreError> {
        self.rows(
            &format!(
                "SELECT {SECRET_COLUMNS} FROM kv_secrets WHERE namespace = $1 ORDER BY path, version"
            ),
            &[&namespace],
        )
        .await?
        .iter()
        .map(secret_row)
        .collect()
    }

    async fn vault_list(&self, prefix: String) -> Result<Vec<SecretSummary>, StoreError> {
        self.rows(
            "SELECT path, MAX(version), COUNT(*), MIN(created_at), MAX(created_at) \
             FROM kv_secrets WHERE left(path, length($1)) = $1 GROUP BY path ORDER BY path",
            &[&prefix],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(SecretSummary {
                path: get(r, 0)?,
                latest_version: to_u64(get(r, 1)?),
                versions: to_u64(get(r, 2)?),
                created_at: get(r, 3)?,
                updated_at: get(r, 4)?,
            })
        })
        .collect()
    }

    async fn vault_versions(&self, path: String) -> Result<Vec<SecretVersionInfo>, StoreError> {
        self.rows(
            "SELECT version, dek_version, created_at FROM kv_secrets WHERE path = $1 ORDER BY version",
            &[&path],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(SecretVersionInfo {
                version: to_u64(get(r, 0)?),
                dek_version: small(get(r, 1)?, "a DEK version")?,
                created_at: get(r, 2)?,
            })
        })
        .collect()
    }

    async fn vault_delete(
        &self,
        path: String,
        mut audit: AuditDraft,
        extra: Vec<AuthorityWrite>,
    ) -> Result<bool, StoreError> {
        crate::authority::record_rows(&mut audit, &extra);
        self.write(move |c, keeper| {
            Box::pin(async move {
                let tx = begin_write(c).await?;
                let row = tx
                    .query_opt(
                        "SELECT namespace FROM kv_secrets WHERE path = $1 LIMIT 1",
                        &[&path],
                    )
                    .await
                    .map_err(pg_error)?;
                let Some(row) = row else {
                    return Ok(false);
                };
                let namespace: String = get(&row, 0)?;
                tx.execute("DELETE FROM kv_secrets WHERE path = $1", &[&path])
                    .await
                    .map_err(pg_error)?;
                apply_writes(&tx, extra, &now_rfc3339()).await?;
                bump_epoch(&tx, &namespace).await?;
                append_in(&tx, audit, keeper).await?;
                tx.commit().await.map_err(pg_error)?;
                Ok(true)
            })
        })
        .await
    }

    async fn vault_epoch(&self, namespace: String) -> Result<u64, StoreError> {
        let rows = self
            .rows(
                "SELECT epoch FROM kv_epochs WHERE namespace = $1",
                &[&namespace],
            )
            .await?;
        Ok(rows
            .first()
            .map(|r| get::<i64>(r, 0))
            .transpose()?
            .map(to_u64)
            .unwrap_or(0))
    }

    async fn vault_epoch_changes(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<EpochChange>, StoreError> {
        self.rows(
            "SELECT namespace, epoch, changed FROM kv_epochs WHERE changed > $1 \
             ORDER BY changed LIMIT $2",
            &[&to_i64(after), &i64::from(limit)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(EpochChange {
                namespace: get(r, 0)?,
                epoch: to_u64(get(r, 1)?),
                changed: to_u64(get(r, 2)?),
            })
        })
        .collect()
    }
}

#[async_trait]
impl AuditLog for PgVault {
    async fn audit_append(&self, draft: AuditDraft) -> Result<AuditEntry, StoreError> {
        self.write(move |c, keeper| {
            Box::pin(async move {
                let tx = begin_write(c).await?;
                let e = append_in(&tx, draft, keeper).await?;
                tx.commit().await.map_err(pg_error)?;
                Ok(e)
            })
        })
        .await
    }

    async fn audit_append_many(&self, drafts: Vec<AuditDraft>) -> Result<u64, StoreError> {
        if drafts.is_empty() {
            return Ok(0);
        }
        self.write(move |c, keeper| {
            Box::pin(async move {
                let tx = begin_write(c).await?;
                let mut last = 0;
                for d in drafts {
                    last = append_in(&tx, d, keeper).await?.seq;
                }
                tx.commit().await.map_err(pg_error)?;
                Ok(last)
            })
        })
        .await
    }

    async fn audit_list(&self, after: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.rows(
            "SELECT seq, at, actor, action, subject, details, prev_hash, hash, mac \
             FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&to_i64(after), &i64::from(limit)],
        )
        .await?
        .iter()
        .map(entry_row)
        .collect()
    }

    async fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        let rows = self
            .rows(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await?;
        rows.first()
            .map(|r| Ok((to_u64(get(r, 0)?), get(r, 1)?)))
            .transpose()
    }

    async fn audit_add_checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO audit_checkpoints (seq, hash, at, key, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
            &[&to_i64(cp.seq), &cp.hash, &cp.at, &cp.key, &cp.signature],
        )
        .await
        .map_err(pg_error)?;
        Ok(())
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.rows(
            "SELECT seq, hash, at, key, signature FROM audit_checkpoints ORDER BY seq",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Checkpoint {
                seq: to_u64(get(r, 0)?),
                hash: get(r, 1)?,
                at: get(r, 2)?,
                key: get(r, 3)?,
                signature: get(r, 4)?,
            })
        })
        .collect()
    }

    fn set_audit_mac(&self, mac: AuditMac) {
        let _ = self.keeper.set(Arc::new(AuditKeeper::new(mac)));
    }

    fn audit_written_head(&self) -> Option<(u64, String)> {
        self.keeper.get().and_then(|k| k.head())
    }
}
