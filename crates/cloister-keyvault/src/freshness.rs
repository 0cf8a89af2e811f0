//! No silent rollback (ARCHITECTURE §11, "Freshness"): keyvault records, in a MACed row per
//! namespace written in the same transaction as every put and delete, the latest version of
//! each secret path. A release compares the database's latest row with that mark and refuses
//! anything else: an older row (the newest deleted), a resurrected deleted secret, or a row
//! keyvault never wrote. While keyvault runs, its in-memory marks are authoritative; across a
//! restart the marks come from the database under their MAC (see docs/SECRETS.md for what a
//! database owner who also rolls back the mark row can still do).

use std::collections::BTreeMap;

use cloister_vault_store::{AuthorityWrite, SecretRecord};
use serde::{Deserialize, Serialize};

use crate::authority::{Authority, Denied, lock};

const FRESH: &str = "fresh";

/// keyvault's mark for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Latest version written.
    pub version: u64,
    /// Whether the secret was deleted (its rows must be gone).
    pub deleted: bool,
}

impl Mark {
    /// `version` was written.
    pub fn written(version: u64) -> Self {
        Self {
            version,
            deleted: false,
        }
    }

    /// The secret was deleted after `version`.
    pub fn deleted_after(version: u64) -> Self {
        Self {
            version,
            deleted: true,
        }
    }
}

/// Marks of one namespace, by full path.
pub type Marks = BTreeMap<String, Mark>;

/// A pending change of a namespace's marks: the write to commit with the data change.
#[derive(Clone)]
pub struct MarkUpdate {
    namespace: String,
    marks: Marks,
    bytes: Vec<u8>,
    /// The row write (compare-and-set against what keyvault last saw).
    pub write: AuthorityWrite,
}

impl MarkUpdate {
    /// The namespace's marks as this change leaves them (row bytes and marks), for the next
    /// change of the same group commit to build on.
    pub fn after(&self) -> (Option<Vec<u8>>, Marks) {
        (Some(self.bytes.clone()), self.marks.clone())
    }

    /// The namespace it changes.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl Authority {
    /// The namespace's marks (cached, or MAC-verified from the database).
    pub async fn marks(&self, namespace: &str) -> Result<(Option<Vec<u8>>, Marks), Denied> {
        self.settle(namespace).await?;
        if let Some((b, m)) = lock(&self.cache).fresh.get(namespace) {
            return Ok((Some(b.clone()), m.clone()));
        }
        match self.load(FRESH, namespace).await? {
            Some(bytes) => {
                let marks: Marks = Self::decode(FRESH, namespace, &bytes)?;
                lock(&self.cache)
                    .fresh
                    .insert(namespace.to_owned(), (bytes.clone(), marks.clone()));
                Ok((Some(bytes), marks))
            }
            None => Ok((None, Marks::new())),
        }
    }

    /// The version the next put of `path` must take: above both the database's next version
    /// and keyvault's mark (numbers are never reused after a delete).
    pub async fn next_version(
        &self,
        namespace: &str,
        path: &str,
        store_next: u64,
    ) -> Result<u64, Denied> {
        let (_, marks) = self.marks(namespace).await?;
        Ok(store_next.max(marks.get(path).map(|m| m.version + 1).unwrap_or(1)))
    }

    /// Prepares the mark change for `path` (to commit with the data change).
    pub async fn mark(
        &self,
        namespace: &str,
        path: &str,
        mark: Mark,
    ) -> Result<MarkUpdate, Denied> {
        let (old, mut marks) = self.marks(namespace).await?;
        marks.insert(path.to_owned(), mark);
        let bytes = Self::encode(&marks)?;
        Ok(MarkUpdate {
            namespace: namespace.to_owned(),
            write: AuthorityWrite {
                row: self.row(FRESH, namespace, bytes.clone()),
                expect: old,
            },
            marks,
            bytes,
        })
    }

    /// Prepares the mark change for `path` on top of `current` (the namespace's marks as a
    /// group commit has already changed them), not keyvault's committed ones.
    pub fn mark_after(
        &self,
        namespace: &str,
        current: &(Option<Vec<u8>>, Marks),
        path: &str,
        mark: Mark,
    ) -> Result<MarkUpdate, Denied> {
        let mut marks = current.1.clone();
        marks.insert(path.to_owned(), mark);
        let bytes = Self::encode(&marks)?;
        Ok(MarkUpdate {
            namespace: namespace.to_owned(),
            write: AuthorityWrite {
                row: self.row(FRESH, namespace, bytes.clone()),
                expect: current.0.clone(),
            },
            marks,
            bytes,
        })
    }

    /// Records a committed mark change.
    pub fn marked(&self, u: MarkUpdate) {
        let mut c = lock(&self.cache);
        c.doubt.remove(&u.namespace);
        c.fresh.insert(u.namespace, (u.bytes, u.marks));
    }

    /// Notes mark changes about to be committed: until [`marked`](Self::marked) or
    /// [`not_marked`](Self::not_marked) says how the commit ended, their outcome is in doubt
    /// (a cancelled writer, a connection lost during the commit), and the next use of the
    /// namespace settles it from the database.
    pub fn marking(&self, updates: &[&MarkUpdate]) {
        let mut c = lock(&self.cache);
        for u in updates {
            c.doubt.insert(u.namespace.clone(), (*u).clone());
        }
    }

    /// The commit of these namespaces' mark changes certainly did not happen.
    pub fn not_marked<'a>(&self, namespaces: impl IntoIterator<Item = &'a str>) {
        let mut c = lock(&self.cache);
        for ns in namespaces {
            c.doubt.remove(ns);
        }
    }

    /// Settles a mark change in doubt: the database's row (under keyvault's MAC) must be the
    /// change (it committed: adopted) or the value it replaced (it did not); anything else is
    /// a rollback alarm. Neither outcome was acknowledged to anyone, so either is consistent.
    async fn settle(&self, namespace: &str) -> Result<(), Denied> {
        let Some(u) = lock(&self.cache).doubt.get(namespace).cloned() else {
            return Ok(());
        };
        let stored = self.load(FRESH, namespace).await?;
        if stored.as_deref() == Some(u.bytes.as_slice()) {
            tracing::warn!(namespace, "a mark change in doubt had committed; adopted");
            self.marked(u);
            return Ok(());
        }
        if stored == u.write.expect {
            tracing::warn!(namespace, "a mark change in doubt had not committed");
            lock(&self.cache).doubt.remove(namespace);
            return Ok(());
        }
        tracing::error!(
            namespace,
            "ALARM: keyvault's freshness row is neither what it last wrote nor what it was writing"
        );
        Err(Denied::Rollback(format!(
            "{namespace}: the freshness row is not one keyvault wrote last"
        )))
    }

    /// Checks the database's latest row of each path against keyvault's marks.
    pub async fn check_fresh(
        &self,
        namespace: &str,
        paths: &[String],
        latest: &[SecretRecord],
    ) -> Result<(), Denied> {
        let (_, marks) = self.marks(namespace).await?;
        for p in paths {
            let row = latest.iter().find(|r| &r.path == p).map(|r| r.version);
            let ok = match (marks.get(p), row) {
                (None, None) => true,
                (Some(m), None) => m.deleted,
                (Some(m), Some(v)) => !m.deleted && m.version == v,
                (None, Some(_)) => false,
            };
            if !ok {
                tracing::error!(
                    path = %p,
                    database = ?row,
                    keyvault = ?marks.get(p),
                    "ALARM: the database's secret rows are not the ones keyvault wrote (rollback)"
                );
                return Err(Denied::Rollback(format!(
                    "{p}: the database holds version {} but keyvault last wrote {}",
                    row.map(|v| v.to_string()).unwrap_or_else(|| "none".into()),
                    match marks.get(p) {
                        Some(m) if m.deleted => format!("a delete after version {}", m.version),
                        Some(m) => format!("version {}", m.version),
                        None => "nothing".into(),
                    }
                )));
            }
        }
        Ok(())
    }
}
