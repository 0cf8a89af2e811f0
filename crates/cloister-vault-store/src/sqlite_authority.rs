//! keyvault's authority rows and used nonces on SQLite.

use async_trait::async_trait;
use cloister_audit::AuditDraft;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use cloister_db::sqlite::backend;
use cloister_db::{StoreError, now_rfc3339};

use crate::authority::{AuthorityRow, AuthorityStore, AuthorityWrite};
use crate::sqlite::{SqliteVault, append_in, bump_epoch};

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuthorityRow> {
    Ok(AuthorityRow {
        kind: r.get(0)?,
        key: r.get(1)?,
        value: r.get(2)?,
        mac: r.get(3)?,
    })
}

/// Applies compare-and-set writes inside the caller's transaction.
pub(crate) fn apply_writes(
    tx: &rusqlite::Transaction<'_>,
    writes: Vec<AuthorityWrite>,
    now: &str,
) -> Result<(), StoreError> {
    for w in writes {
        let current: Option<Vec<u8>> = tx
            .query_row(
                "SELECT value FROM kv_authority WHERE kind = ?1 AND key = ?2",
                params![w.row.kind, w.row.key],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        if current != w.expect {
            return Err(StoreError::Conflict(format!(
                "{} {} changed concurrently",
                w.row.kind, w.row.key
            )));
        }
        tx.execute(
            "INSERT INTO kv_authority (kind, key, value, mac, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (kind, key) DO UPDATE SET \
             value = excluded.value, mac = excluded.mac, updated_at = excluded.updated_at",
            params![w.row.kind, w.row.key, w.row.value, w.row.mac, now],
        )
        .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl AuthorityStore for SqliteVault {
    async fn authority_get(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<AuthorityRow>, StoreError> {
        let (kind, key) = (kind.to_owned(), key.to_owned());
        self.with(move |c| {
            c.query_row(
                "SELECT kind, key, value, mac FROM kv_authority WHERE kind = ?1 AND key = ?2",
                params![kind, key],
                row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn authority_list(&self, kind: &str) -> Result<Vec<AuthorityRow>, StoreError> {
        let kind = kind.to_owned();
        self.with(move |c| {
            let mut st = c
                .prepare(
                    "SELECT kind, key, value, mac FROM kv_authority WHERE kind = ?1 ORDER BY key",
                )
                .map_err(backend)?;
            let rows = st.query_map([kind], row).map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn authority_write(
        &self,
        writes: Vec<AuthorityWrite>,
        audit: Option<AuditDraft>,
        bump_namespace: Option<String>,
    ) -> Result<(), StoreError> {
        self.with_mac(move |c, keeper| {
            let now = now_rfc3339();
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let audit = audit.map(|mut a| {
                crate::authority::record_rows(&mut a, &writes);
                a
            });
            apply_writes(&tx, writes, &now)?;
            if let Some(a) = audit {
                append_in(&tx, a, keeper)?;
            }
            if let Some(ns) = bump_namespace {
                bump_epoch(&tx, &ns)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn nonces_persist(&self, nonces: Vec<(String, u64)>, now: u64) -> Result<(), StoreError> {
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.execute(
                "DELETE FROM kv_nonces WHERE expires < ?1",
                [i64::try_from(now).unwrap_or(i64::MAX)],
            )
            .map_err(backend)?;
            for (nonce, expires) in nonces {
                tx.execute(
                    "INSERT INTO kv_nonces (nonce, expires) VALUES (?1, ?2) \
                     ON CONFLICT (nonce) DO NOTHING",
                    params![nonce, i64::try_from(expires).unwrap_or(i64::MAX)],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn nonces_load(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(move |c| {
            let mut st = c
                .prepare("SELECT nonce, expires FROM kv_nonces WHERE expires >= ?1")
                .map_err(backend)?;
            let rows = st
                .query_map([i64::try_from(now).unwrap_or(i64::MAX)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(backend)?;
            rows.map(|r| r.map(|(n, e)| (n, u64::try_from(e).unwrap_or(0))))
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)
        })
        .await
    }
}
