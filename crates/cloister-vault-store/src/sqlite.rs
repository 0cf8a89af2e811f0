//! keyvault's store on SQLite (the embedded default): [`VaultStore`] and [`AuditLog`] here,
//! [`AuthorityStore`](crate::AuthorityStore) in `sqlite_authority`. Every write transaction
//! is `IMMEDIATE`: writers take turns, so compare-and-set checks and the audit chain's head
//! cannot race.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use cloister_audit::{AuditDraft, AuditEntry, Checkpoint, GENESIS_HASH};
use cloister_db::sqlite::backend;
use cloister_db::{StoreError, now_rfc3339, to_i64, to_u64};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use crate::audit::{AuditKeeper, AuditLog, AuditMac};
use crate::authority::AuthorityWrite;
use crate::migrations::TRACK;
use crate::sqlite_authority::apply_writes;
use crate::vault::{
    DekRecord, EpochChange, MekRecord, RootRecord, SecretPut, SecretRecord, SecretSummary,
    SecretVersionInfo, VaultStore,
};

/// keyvault's store on one SQLite database file.
#[derive(Clone)]
pub struct SqliteVault {
    conn: cloister_db::sqlite::Shared,
    keeper: Arc<std::sync::OnceLock<Arc<AuditKeeper>>>,
}

impl std::fmt::Debug for SqliteVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteVault").finish_non_exhaustive()
    }
}

impl SqliteVault {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::init(cloister_db::sqlite::open(path)?)
    }

    /// An in-memory database (tests and throwaway runs).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(cloister_db::sqlite::open_in_memory()?)
    }

    /// Writes a consistent copy of the database at `db` to `out` (see
    /// [`cloister_db::sqlite::backup_file`]).
    pub fn backup_file(db: &Path, out: &Path) -> Result<(), StoreError> {
        cloister_db::sqlite::backup_file(db, out)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        cloister_db::migrate::sqlite(&mut conn, &TRACK)?;
        Ok(Self {
            conn: cloister_db::sqlite::Shared::new(conn),
            keeper: Arc::new(std::sync::OnceLock::new()),
        })
    }

    /// Schema version currently applied.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        self.with(|c| cloister_db::migrate::sqlite_version(c, &TRACK))
            .await
    }

    /// Like `with`, also handing over keyvault's hold on the chain when one is set.
    pub(crate) async fn with_mac<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, Option<&AuditKeeper>) -> Result<T, StoreError> + Send + 'static,
    {
        let keeper = self.keeper.get().cloned();
        self.with(move |c| {
            if let Some(k) = &keeper {
                k.begin();
            }
            let r = f(c, keeper.as_deref());
            if let Some(k) = &keeper {
                k.finish(r.is_ok());
            }
            r
        })
        .await
    }

    pub(crate) async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.conn.with(f).await
    }
}

fn immediate(c: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    c.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)
}

fn conflict(msg: impl Into<String>) -> StoreError {
    StoreError::Conflict(msg.into())
}

/// Appends `draft` inside the caller's transaction.
pub(crate) fn append_in(
    tx: &Transaction<'_>,
    draft: AuditDraft,
    keeper: Option<&AuditKeeper>,
) -> Result<AuditEntry, StoreError> {
    // Cached statements: a group commit appends hundreds of entries per transaction.
    let head: Option<(i64, String)> = tx
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(backend)?;
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
    tx.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash, mac) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut st| {
        st.execute(params![
            to_i64(e.seq),
            e.at,
            e.actor,
            e.action,
            e.subject,
            e.details,
            e.prev_hash,
            e.hash,
            e.mac
        ])
    })
    .map_err(backend)?;
    Ok(e)
}

pub(crate) fn bump_epoch(tx: &Transaction<'_>, namespace: &str) -> Result<(), StoreError> {
    // Writers take turns (IMMEDIATE), so MAX + 1 is this store's next change number.
    tx.prepare_cached(
        "INSERT INTO kv_epochs (namespace, epoch, changed) \
         VALUES (?1, 1, (SELECT COALESCE(MAX(changed), 0) + 1 FROM kv_epochs)) \
         ON CONFLICT (namespace) DO UPDATE SET epoch = epoch + 1, changed = excluded.changed",
    )
    .and_then(|mut st| st.execute([namespace]))
    .map_err(backend)?;
    Ok(())
}

/// One put inside the caller's write transaction: the version must be next and the DEK the
/// namespace's latest; the record, its authority rows, the epoch bump and the audit entry go
/// in together.
fn put_in(
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
    if next_secret_version(tx, &secret.path)? > secret.version {
        return Err(conflict(format!(
            "{} got a new version meanwhile",
            secret.path
        )));
    }
    if latest_dek_version(tx, &secret.namespace)? != secret.dek_version {
        return Err(conflict(format!(
            "the DEK of {} changed meanwhile",
            secret.namespace
        )));
    }
    let now = now_rfc3339();
    tx.prepare_cached(&format!(
        "INSERT INTO kv_secrets ({SECRET_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    ))
    .and_then(|mut st| {
        st.execute(params![
            secret.path,
            to_i64(secret.version),
            secret.namespace,
            secret.dek_version,
            secret.ciphertext,
            now
        ])
    })
    .map_err(backend)?;
    apply_writes(tx, extra, &now)?;
    bump_epoch(tx, &secret.namespace)?;
    append_in(tx, audit, keeper)?;
    Ok(now)
}

fn mek_row(r: &Row<'_>) -> rusqlite::Result<MekRecord> {
    Ok(MekRecord {
        id: r.get(0)?,
        kek_id: r.get(1)?,
        wrapped: r.get(2)?,
        active: r.get::<_, i64>(3)? != 0,
        created_at: r.get(4)?,
    })
}

fn dek_row(r: &Row<'_>) -> rusqlite::Result<DekRecord> {
    Ok(DekRecord {
        namespace: r.get(0)?,
        version: r.get(1)?,
        id: r.get(2)?,
        mek_id: r.get(3)?,
        wrapped: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const SECRET_COLUMNS: &str = "path, version, namespace, dek_version, ciphertext, created_at";

fn secret_row(r: &Row<'_>) -> rusqlite::Result<SecretRecord> {
    Ok(SecretRecord {
        path: r.get(0)?,
        version: to_u64(r.get(1)?),
        namespace: r.get(2)?,
        dek_version: r.get(3)?,
        ciphertext: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn entry_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: to_u64(r.get(0)?),
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        subject: r.get(4)?,
        details: r.get(5)?,
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
        mac: r.get(8)?,
    })
}

fn collect<T>(rows: impl Iterator<Item = rusqlite::Result<T>>) -> Result<Vec<T>, StoreError> {
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

fn latest_dek_version(tx: &Transaction<'_>, namespace: &str) -> Result<u32, StoreError> {
    tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM kv_deks WHERE namespace = ?1",
        [namespace],
        |r| r.get(0),
    )
    .map_err(backend)
}

fn next_secret_version(c: &Connection, path: &str) -> Result<u64, StoreError> {
    c.query_row(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM kv_secrets WHERE path = ?1",
        [path],
        |r| r.get::<_, i64>(0),
    )
    .map(to_u64)
    .map_err(backend)
}

#[async_trait]
impl VaultStore for SqliteVault {
    async fn vault_root(&self) -> Result<Option<RootRecord>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT root_id, measurement, sealed, recovery, created_at FROM kv_root",
                [],
                |r| {
                    Ok(RootRecord {
                        root_id: r.get(0)?,
                        measurement: r.get(1)?,
                        sealed: r.get(2)?,
                        recovery: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn vault_init(
        &self,
        root: RootRecord,
        mek: MekRecord,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        self.with_mac(move |c, keeper| {
            let tx = immediate(c)?;
            let now = now_rfc3339();
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO kv_root \
                     (singleton, root_id, measurement, sealed, recovery, created_at, updated_at) \
                     VALUES (1, ?1, ?2, ?3, ?4, ?5, ?5)",
                    params![root.root_id, root.measurement, root.sealed, root.recovery, now],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(conflict("the vault is already initialised"));
            }
            tx.execute(
                "INSERT INTO kv_meks (id, kek_id, wrapped, active, created_at) VALUES (?1, ?2, ?3, 1, ?4)",
                params![mek.id, mek.kek_id, mek.wrapped, now],
            )
            .map_err(backend)?;
            append_in(&tx, audit, keeper)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn vault_reseal(
        &self,
        measurement: String,
        sealed: Vec<u8>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        self.with_mac(move |c, keeper| {
            let tx = immediate(c)?;
            let n = tx
                .execute(
                    "UPDATE kv_root SET measurement = ?1, sealed = ?2, updated_at = ?3",
                    params![measurement, sealed, now_rfc3339()],
                )
                .map_err(backend)?;
            if n != 1 {
                return Err(conflict("the vault is not initialised"));
            }
            append_in(&tx, audit, keeper)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn vault_meks(&self) -> Result<Vec<MekRecord>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare("SELECT id, kek_id, wrapped, active, created_at FROM kv_meks ORDER BY created_at")
                .map_err(backend)?;
            collect(st.query_map([], mek_row).map_err(backend)?)
        })
        .await
    }

    async fn vault_deks(&self, namespace: Option<String>) -> Result<Vec<DekRecord>, StoreError> {
        self.with(move |c| {
            let sql = "SELECT namespace, version, id, mek_id, wrapped, created_at FROM kv_deks \
                       WHERE ?1 IS NULL OR namespace = ?1 ORDER BY namespace, version";
            let mut st = c.prepare(sql).map_err(backend)?;
            collect(st.query_map([namespace], dek_row).map_err(backend)?)
        })
        .await
    }

    async fn vault_add_dek(&self, dek: DekRecord) -> Result<(), StoreError> {
        self.with(move |c| {
            let tx = immediate(c)?;
            if latest_dek_version(&tx, &dek.namespace)? != 0 || dek.version != 1 {
                return Err(conflict(format!(
                    "namespace {} already has a DEK",
                    dek.namespace
                )));
            }
            tx.execute(
                "INSERT INTO kv_deks (namespace, version, id, mek_id, wrapped, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    dek.namespace,
                    dek.version,
                    dek.id,
                    dek.mek_id,
                    dek.wrapped,
                    now_rfc3339()
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn vault_rotate_mek(
        &self,
        mek: MekRecord,
        rewrapped: Vec<DekRecord>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        self.with_mac(move |c, keeper| {
            let tx = immediate(c)?;
            let total: i64 = tx
                .query_row("SELECT COUNT(*) FROM kv_deks", [], |r| r.get(0))
                .map_err(backend)?;
            if to_u64(total) != rewrapped.len() as u64 {
                return Err(conflict("DEKs changed during MEK rotation"));
            }
            tx.execute("UPDATE kv_meks SET active = 0", []).map_err(backend)?;
            tx.execute(
                "INSERT INTO kv_meks (id, kek_id, wrapped, active, created_at) VALUES (?1, ?2, ?3, 1, ?4)",
                params![mek.id, mek.kek_id, mek.wrapped, now_rfc3339()],
            )
            .map_err(backend)?;
            for d in &rewrapped {
                let n = tx
                    .execute(
                        "UPDATE kv_deks SET mek_id = ?1, wrapped = ?2 \
                         WHERE namespace = ?3 AND version = ?4 AND id = ?5",
                        params![mek.id, d.wrapped, d.namespace, d.version, d.id],
                    )
                    .map_err(backend)?;
                if n != 1 {
                    return Err(conflict(format!("DEK {}/{} changed during MEK rotation", d.namespace, d.version)));
                }
            }
            append_in(&tx, audit, keeper)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn vault_rotate_dek(
        &self,
        dek: DekRecord,
        reencrypted: Vec<SecretRecord>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        self.with_mac(move |c, keeper| {
            let tx = immediate(c)?;
            if latest_dek_version(&tx, &dek.namespace)? + 1 != dek.version {
                return Err(conflict(format!(
                    "the DEK of {} changed meanwhile",
                    dek.namespace
                )));
            }
            let total: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM kv_secrets WHERE namespace = ?1",
                    [&dek.namespace],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if to_u64(total) != reencrypted.len() as u64 {
                return Err(conflict(format!(
                    "secrets of {} changed during rotation",
                    dek.namespace
                )));
            }
            tx.execute(
                "INSERT INTO kv_deks (namespace, version, id, mek_id, wrapped, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    dek.namespace,
                    dek.version,
                    dek.id,
                    dek.mek_id,
                    dek.wrapped,
                    now_rfc3339()
                ],
            )
            .map_err(backend)?;
            for s in &reencrypted {
                let n = tx
                    .execute(
                        "UPDATE kv_secrets SET dek_version = ?1, ciphertext = ?2 \
                         WHERE path = ?3 AND version = ?4 AND namespace = ?5",
                        params![
                            dek.version,
                            s.ciphertext,
                            s.path,
                            to_i64(s.version),
                            dek.namespace
                        ],
                    )
                    .map_err(backend)?;
                if n != 1 {
                    return Err(conflict(format!(
                        "{} v{} changed during rotation",
                        s.path, s.version
                    )));
                }
            }
            bump_epoch(&tx, &dek.namespace)?;
            append_in(&tx, audit, keeper)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn vault_next_version(&self, path: String) -> Result<u64, StoreError> {
        self.with(move |c| next_secret_version(c, &path)).await
    }

    async fn vault_put_secrets(&self, puts: Vec<SecretPut>) -> Result<Vec<String>, StoreError> {
        if puts.is_empty() {
            return Ok(Vec::new());
        }
        self.with_mac(move |c, keeper| {
            let tx = immediate(c)?;
            let mut times = Vec::with_capacity(puts.len());
            for put in puts {
                times.push(put_in(&tx, put, keeper)?);
            }
            tx.commit().map_err(backend)?;
            Ok(times)
        })
        .await
    }

    async fn vault_latest(&self, paths: Vec<String>) -> Result<Vec<SecretRecord>, StoreError> {
        self.with(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {SECRET_COLUMNS} FROM kv_secrets WHERE path = ?1 ORDER BY version DESC LIMIT 1"
                ))
                .map_err(backend)?;
            let mut out = Vec::with_capacity(paths.len());
            for p in &paths {
                if let Some(rec) = st.query_row([p], secret_row).optional().map_err(backend)? {
                    out.push(rec);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn vault_records(&self, path: String) -> Result<Vec<SecretRecord>, StoreError> {
        self.with(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {SECRET_COLUMNS} FROM kv_secrets WHERE path = ?1 ORDER BY version"
                ))
                .map_err(backend)?;
            collect(st.query_map([path], secret_row).map_err(backend)?)
        })
        .await
    }

    async fn vault_namespace_secrets(
        &self,
        namespace: String,
    ) -> Result<Vec<SecretRecord>, StoreError> {
        self.with(move |c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {SECRET_COLUMNS} FROM kv_secrets WHERE namespace = ?1 ORDER BY path, version"
                ))
                .map_err(backend)?;
            collect(st.query_map([namespace], secret_row).map_err(backend)?)
        })
        .await
    }

    async fn vault_list(&self, prefix: String) -> Result<Vec<SecretSummary>, StoreError> {
        self.with(move |c| {
            let mut st = c
                .prepare(
                    "SELECT path, MAX(version), COUNT(*), MIN(created_at), MAX(created_at) \
                     FROM kv_secrets WHERE substr(path, 1, length(?1)) = ?1 GROUP BY path ORDER BY path",
                )
                .map_err(backend)?;
            let rows = st
                .query_map([prefix], |r| {
                    Ok(SecretSummary {
                        path: r.get(0)?,
                        latest_version: to_u64(r.get(1)?),
                        versions: to_u64(r.get(2)?),
                        created_at: r.get(3)?,
                        updated_at: r.get(4)?,
                    })
                })
                .map_err(backend)?;
            collect(rows)
        })
        .await
    }

    async fn vault_versions(&self, path: String) -> Result<Vec<SecretVersionInfo>, StoreError> {
        self.with(move |c| {
            let mut st = c
                .prepare("SELECT version, dek_version, created_at FROM kv_secrets WHERE path = ?1 ORDER BY version")
                .map_err(backend)?;
            let rows = st
                .query_map([path], |r| {
                    Ok(SecretVersionInfo {
                        version: to_u64(r.get(0)?),
                        dek_version: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                })
                .map_err(backend)?;
            collect(rows)
        })
        .await
    }

    async fn vault_delete(
        &self,
        path: String,
        mut audit: AuditDraft,
        extra: Vec<AuthorityWrite>,
    ) -> Result<bool, StoreError> {
        crate::authority::record_rows(&mut audit, &extra);
        self.with_mac(move |c, keeper| {
            let tx = immediate(c)?;
            let namespace: Option<String> = tx
                .query_row(
                    "SELECT namespace FROM kv_secrets WHERE path = ?1 LIMIT 1",
                    [&path],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let Some(namespace) = namespace else {
                return Ok(false);
            };
            tx.execute("DELETE FROM kv_secrets WHERE path = ?1", [&path])
                .map_err(backend)?;
            apply_writes(&tx, extra, &now_rfc3339())?;
            bump_epoch(&tx, &namespace)?;
            append_in(&tx, audit, keeper)?;
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn vault_epoch_changes(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<EpochChange>, StoreError> {
        self.with(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT namespace, epoch, changed FROM kv_epochs WHERE changed > ?1 \
                     ORDER BY changed LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![to_i64(after), limit], |r| {
                    Ok(EpochChange {
                        namespace: r.get(0)?,
                        epoch: to_u64(r.get(1)?),
                        changed: to_u64(r.get(2)?),
                    })
                })
                .map_err(backend)?;
            collect(rows)
        })
        .await
    }

    async fn vault_epoch(&self, namespace: String) -> Result<u64, StoreError> {
        self.with(move |c| {
            c.prepare_cached("SELECT epoch FROM kv_epochs WHERE namespace = ?1")
                .map_err(backend)?
                .query_row([namespace], |r| r.get::<_, i64>(0))
                .optional()
                .map(|e| e.map(to_u64).unwrap_or(0))
                .map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl AuditLog for SqliteVault {
    async fn audit_append(&self, draft: AuditDraft) -> Result<AuditEntry, StoreError> {
        self.with_mac(move |c, keeper| {
            let tx = immediate(c)?;
            let e = append_in(&tx, draft, keeper)?;
            tx.commit().map_err(backend)?;
            Ok(e)
        })
        .await
    }

    async fn audit_list(&self, after: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT seq, at, actor, action, subject, details, prev_hash, hash, mac \
                     FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(backend)?;
            collect(
                st.query_map(params![to_i64(after), limit], entry_row)
                    .map_err(backend)?,
            )
        })
        .await
    }

    async fn audit_append_many(&self, drafts: Vec<AuditDraft>) -> Result<u64, StoreError> {
        if drafts.is_empty() {
            return Ok(0);
        }
        self.with_mac(move |c, keeper| {
            let tx = immediate(c)?;
            let mut last = 0;
            for d in drafts {
                last = append_in(&tx, d, keeper)?.seq;
            }
            tx.commit().map_err(backend)?;
            Ok(last)
        })
        .await
    }

    fn set_audit_mac(&self, mac: AuditMac) {
        let _ = self.keeper.set(Arc::new(AuditKeeper::new(mac)));
    }

    fn audit_written_head(&self) -> Option<(u64, String)> {
        self.keeper.get().and_then(|k| k.head())
    }

    async fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((to_u64(r.get(0)?), r.get(1)?)),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn audit_add_checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO audit_checkpoints (seq, hash, at, key, signature) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![to_i64(cp.seq), cp.hash, cp.at, cp.key, cp.signature],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare("SELECT seq, hash, at, key, signature FROM audit_checkpoints ORDER BY seq")
                .map_err(backend)?;
            let rows = st
                .query_map([], |r| {
                    Ok(Checkpoint {
                        seq: to_u64(r.get(0)?),
                        hash: r.get(1)?,
                        at: r.get(2)?,
                        key: r.get(3)?,
                        signature: r.get(4)?,
                    })
                })
                .map_err(backend)?;
            collect(rows)
        })
        .await
    }
}
