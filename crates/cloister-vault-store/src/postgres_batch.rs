//! A group commit of secret puts on PostgreSQL in a fixed number of round trips, whatever its
//! size: every check reads what it needs in one query up front, the puts are applied in order
//! in memory — each seeing the ones before it, exactly as one-by-one `put_in` calls would —
//! and the rows go in with one multi-row statement per table. The caller holds the vault's
//! write lock, so nothing changes between the reads and the writes.

use std::collections::{BTreeMap, HashMap};

use cloister_audit::GENESIS_HASH;
use cloister_db::pg::pg_error;
use cloister_db::{StoreError, now_rfc3339, to_i64, to_u64};
use deadpool_postgres::Transaction;

use crate::audit::AuditKeeper;
use crate::postgres::get;
use crate::vault::SecretPut;

fn conflict(msg: String) -> StoreError {
    StoreError::Conflict(msg)
}

/// Applies `puts` in order inside the caller's write transaction; all or nothing.
pub(crate) async fn put_many_in(
    tx: &Transaction<'_>,
    puts: Vec<SecretPut>,
    keeper: Option<&AuditKeeper>,
) -> Result<Vec<String>, StoreError> {
    // What the checks read, once.
    let paths: Vec<String> = puts.iter().map(|p| p.secret.path.clone()).collect();
    let namespaces: Vec<String> = puts.iter().map(|p| p.secret.namespace.clone()).collect();
    let mut versions: HashMap<String, u64> = HashMap::new();
    for r in tx
        .query(
            "SELECT path, MAX(version) FROM kv_secrets WHERE path = ANY($1) GROUP BY path",
            &[&paths],
        )
        .await
        .map_err(pg_error)?
    {
        versions.insert(get(&r, 0)?, to_u64(get(&r, 1)?));
    }
    let mut deks: HashMap<String, i64> = HashMap::new();
    for r in tx
        .query(
            "SELECT namespace, MAX(version) FROM kv_deks WHERE namespace = ANY($1) \
             GROUP BY namespace",
            &[&namespaces],
        )
        .await
        .map_err(pg_error)?
    {
        deks.insert(get(&r, 0)?, get(&r, 1)?);
    }
    let (kinds, keys): (Vec<String>, Vec<String>) = puts
        .iter()
        .flat_map(|p| p.extra.iter())
        .map(|w| (w.row.kind.clone(), w.row.key.clone()))
        .unzip();
    let mut rows: HashMap<(String, String), Option<Vec<u8>>> = HashMap::new();
    for r in tx
        .query(
            "SELECT a.kind, a.key, a.value FROM kv_authority a \
             JOIN UNNEST($1::TEXT[], $2::TEXT[]) AS w(kind, key) \
             ON a.kind = w.kind AND a.key = w.key",
            &[&kinds, &keys],
        )
        .await
        .map_err(pg_error)?
    {
        rows.insert((get(&r, 0)?, get(&r, 1)?), Some(get(&r, 2)?));
    }
    let head = tx
        .query_opt(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(pg_error)?;
    let head: Option<(u64, String)> = match head {
        Some(r) => Some((to_u64(get(&r, 0)?), get(&r, 1)?)),
        None => None,
    };
    if let Some(k) = keeper {
        k.check(head.as_ref().map(|(s, h)| (*s, h.as_str())))?;
    }
    let changed_base: i64 = get(
        &tx.query_one(
            "SELECT COALESCE(MAX(changed), 0)::BIGINT FROM kv_epochs",
            &[],
        )
        .await
        .map_err(pg_error)?,
        0,
    )?;

    // The puts, in order, in memory.
    let (mut seq, mut prev) = match head {
        Some((seq, hash)) => {
            let prev: [u8; 32] = hex::decode(&hash)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt(format!("audit entry {seq} hash")))?;
            (seq, prev)
        }
        None => (0, GENESIS_HASH),
    };
    let mut secrets = SecretColumns::default();
    let mut authority: BTreeMap<(String, String), (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    let mut epochs: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut entries = Vec::with_capacity(puts.len());
    let mut times = Vec::with_capacity(puts.len());
    for (i, put) in puts.into_iter().enumerate() {
        let SecretPut {
            secret,
            mut audit,
            extra,
        } = put;
        crate::authority::record_rows(&mut audit, &extra);
        let next = versions.get(&secret.path).copied().unwrap_or(0) + 1;
        if next > secret.version {
            return Err(conflict(format!(
                "{} got a new version meanwhile",
                secret.path
            )));
        }
        if deks.get(&secret.namespace).copied().unwrap_or(0) != i64::from(secret.dek_version) {
            return Err(conflict(format!(
                "the DEK of {} changed meanwhile",
                secret.namespace
            )));
        }
        for w in &extra {
            let k = (w.row.kind.clone(), w.row.key.clone());
            let current = rows.get(&k).cloned().flatten();
            if current != w.expect {
                return Err(conflict(format!(
                    "{} {} changed concurrently",
                    w.row.kind, w.row.key
                )));
            }
            rows.insert(k.clone(), Some(w.row.value.clone()));
            authority.insert(k, (w.row.value.clone(), w.row.mac.clone()));
        }
        versions.insert(secret.path.clone(), secret.version);
        let e = epochs.entry(secret.namespace.clone()).or_insert((0, 0));
        e.0 += 1;
        e.1 = changed_base + i as i64 + 1;
        let now = now_rfc3339();
        seq += 1;
        let mut entry = audit.chain(seq, now.clone(), prev);
        if let Some(k) = keeper {
            entry.mac = (k.mac)(&entry.hash);
        }
        prev = entry
            .hash_bytes()
            .ok_or_else(|| StoreError::Corrupt("a chained entry has no hash".into()))?;
        secrets.push(secret, &now);
        entries.push(entry);
        times.push(now);
    }

    // The rows, one statement per table.
    tx.execute(
        "INSERT INTO kv_secrets (path, version, namespace, dek_version, ciphertext, created_at) \
         SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::BYTEA[], \
         $6::TEXT[])",
        &[
            &secrets.path,
            &secrets.version,
            &secrets.namespace,
            &secrets.dek_version,
            &secrets.ciphertext,
            &secrets.created_at,
        ],
    )
    .await
    .map_err(pg_error)?;
    let now = now_rfc3339();
    let (mut a_kind, mut a_key, mut a_value, mut a_mac) = (vec![], vec![], vec![], vec![]);
    for ((kind, key), (value, mac)) in authority {
        a_kind.push(kind);
        a_key.push(key);
        a_value.push(value);
        a_mac.push(mac);
    }
    tx.execute(
        "INSERT INTO kv_authority (kind, key, value, mac, updated_at) \
         SELECT k, y, v, m, $5 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BYTEA[], $4::BYTEA[]) \
         AS t(k, y, v, m) \
         ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, mac = EXCLUDED.mac, \
         updated_at = EXCLUDED.updated_at",
        &[&a_kind, &a_key, &a_value, &a_mac, &now],
    )
    .await
    .map_err(pg_error)?;
    let (mut e_ns, mut e_count, mut e_changed) = (vec![], vec![], vec![]);
    for (ns, (count, changed)) in epochs {
        e_ns.push(ns);
        e_count.push(count);
        e_changed.push(changed);
    }
    tx.execute(
        "INSERT INTO kv_epochs (namespace, epoch, changed) \
         SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) \
         ON CONFLICT (namespace) DO UPDATE SET epoch = kv_epochs.epoch + EXCLUDED.epoch, \
         changed = EXCLUDED.changed",
        &[&e_ns, &e_count, &e_changed],
    )
    .await
    .map_err(pg_error)?;
    let mut cols: [Vec<String>; 8] = Default::default();
    let mut seqs = Vec::with_capacity(entries.len());
    for e in &entries {
        seqs.push(to_i64(e.seq));
        for (c, v) in cols.iter_mut().zip([
            &e.at,
            &e.actor,
            &e.action,
            &e.subject,
            &e.details,
            &e.prev_hash,
            &e.hash,
            &e.mac,
        ]) {
            c.push(v.clone());
        }
    }
    tx.execute(
        "INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash, mac) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
         $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[])",
        &[
            &seqs, &cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5], &cols[6], &cols[7],
        ],
    )
    .await
    .map_err(pg_error)?;
    if let (Some(k), Some(last)) = (keeper, entries.last()) {
        k.stage(last.seq, last.hash.clone());
    }
    Ok(times)
}

/// `kv_secrets` rows as columns, for one `UNNEST` insert.
#[derive(Default)]
struct SecretColumns {
    path: Vec<String>,
    version: Vec<i64>,
    namespace: Vec<String>,
    dek_version: Vec<i64>,
    ciphertext: Vec<Vec<u8>>,
    created_at: Vec<String>,
}

impl SecretColumns {
    fn push(&mut self, s: crate::vault::SecretRecord, at: &str) {
        self.path.push(s.path);
        self.version.push(to_i64(s.version));
        self.namespace.push(s.namespace);
        self.dek_version.push(i64::from(s.dek_version));
        self.ciphertext.push(s.ciphertext);
        self.created_at.push(at.to_owned());
    }
}
