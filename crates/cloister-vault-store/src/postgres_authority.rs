//! keyvault's authority rows and used nonces on PostgreSQL.

use async_trait::async_trait;
use cloister_audit::AuditDraft;
use cloister_db::pg::pg_error;
use cloister_db::{StoreError, now_rfc3339, to_i64, to_u64};
use deadpool_postgres::Transaction;

use crate::authority::{AuthorityRow, AuthorityStore, AuthorityWrite};
use crate::postgres::{PgVault, append_in, begin_write, bump_epoch};

fn row(r: &tokio_postgres::Row) -> Result<AuthorityRow, StoreError> {
    Ok(AuthorityRow {
        kind: r.try_get(0).map_err(pg_error)?,
        key: r.try_get(1).map_err(pg_error)?,
        value: r.try_get(2).map_err(pg_error)?,
        mac: r.try_get(3).map_err(pg_error)?,
    })
}

/// Applies compare-and-set writes inside the caller's write transaction (which holds the
/// vault's write lock, so the value read is the value replaced).
pub(crate) async fn apply_writes(
    tx: &Transaction<'_>,
    writes: Vec<AuthorityWrite>,
    now: &str,
) -> Result<(), StoreError> {
    let read = tx
        .prepare_cached("SELECT value FROM kv_authority WHERE kind = $1 AND key = $2")
        .await
        .map_err(pg_error)?;
    let upsert = tx
        .prepare_cached(
            "INSERT INTO kv_authority (kind, key, value, mac, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, key) DO UPDATE SET \
             value = EXCLUDED.value, mac = EXCLUDED.mac, updated_at = EXCLUDED.updated_at",
        )
        .await
        .map_err(pg_error)?;
    for w in writes {
        let current: Option<Vec<u8>> = tx
            .query_opt(&read, &[&w.row.kind, &w.row.key])
            .await
            .map_err(pg_error)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg_error)?;
        if current != w.expect {
            return Err(StoreError::Conflict(format!(
                "{} {} changed concurrently",
                w.row.kind, w.row.key
            )));
        }
        tx.execute(
            &upsert,
            &[&w.row.kind, &w.row.key, &w.row.value, &w.row.mac, &now],
        )
        .await
        .map_err(pg_error)?;
    }
    Ok(())
}

#[async_trait]
impl AuthorityStore for PgVault {
    async fn authority_get(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<AuthorityRow>, StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT kind, key, value, mac FROM kv_authority WHERE kind = $1 AND key = $2",
            )
            .await
            .map_err(pg_error)?;
        c.query_opt(&st, &[&kind, &key])
            .await
            .map_err(pg_error)?
            .as_ref()
            .map(row)
            .transpose()
    }

    async fn authority_list(&self, kind: &str) -> Result<Vec<AuthorityRow>, StoreError> {
        let c = self.conn().await?;
        c.query(
            "SELECT kind, key, value, mac FROM kv_authority WHERE kind = $1 ORDER BY key",
            &[&kind],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(row)
        .collect()
    }

    async fn authority_write(
        &self,
        writes: Vec<AuthorityWrite>,
        audit: Option<AuditDraft>,
        bump_namespace: Option<String>,
    ) -> Result<(), StoreError> {
        self.write(move |c, keeper| {
            Box::pin(async move {
                let now = now_rfc3339();
                let tx = begin_write(c).await?;
                let audit = audit.map(|mut a| {
                    crate::authority::record_rows(&mut a, &writes);
                    a
                });
                apply_writes(&tx, writes, &now).await?;
                if let Some(a) = audit {
                    append_in(&tx, a, keeper).await?;
                }
                if let Some(ns) = bump_namespace {
                    bump_epoch(&tx, &ns).await?;
                }
                tx.commit().await.map_err(pg_error)
            })
        })
        .await
    }

    async fn nonces_persist(&self, nonces: Vec<(String, u64)>, now: u64) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_error)?;
        tx.execute("DELETE FROM kv_nonces WHERE expires < $1", &[&to_i64(now)])
            .await
            .map_err(pg_error)?;
        let st = tx
            .prepare_cached(
                "INSERT INTO kv_nonces (nonce, expires) VALUES ($1, $2) \
                 ON CONFLICT (nonce) DO NOTHING",
            )
            .await
            .map_err(pg_error)?;
        for (nonce, expires) in nonces {
            tx.execute(&st, &[&nonce, &to_i64(expires)])
                .await
                .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)
    }

    async fn nonces_load(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let c = self.conn().await?;
        c.query(
            "SELECT nonce, expires FROM kv_nonces WHERE expires >= $1",
            &[&to_i64(now)],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(pg_error)?,
                to_u64(r.try_get(1).map_err(pg_error)?),
            ))
        })
        .collect()
    }
}
