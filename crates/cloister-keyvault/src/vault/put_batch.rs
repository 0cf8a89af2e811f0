//! Group commit of secret writes: writes that arrive together share one transaction (one
//! durable flush, one turn of the store's write lock), so the put rate is not bounded by one
//! disk flush (and, on PostgreSQL, a few round trips) per put. Each caller still returns only
//! once its own write is committed, with its own version.
//!
//! A leader (whoever holds keyvault's write lock) takes every queued write, prepares them in
//! order — each on top of the ones before it: versions, freshness marks, DEKs — and commits
//! them in one `vault_put_secrets`. The batch is all or nothing: when it conflicts (another
//! writer changed a row keyvault expected), every write in it is redone alone with the
//! single-write retries, so one conflict fails no one else's write.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cloister_audit::AuditDraft;
use cloister_crypto::SecretBytes;
use cloister_vault_store::{SecretPut, SecretRecord, StoreError};
use tokio::sync::oneshot;

use super::{Existing, Vault};
use crate::error::VaultError;
use crate::freshness::{Mark, MarkUpdate, Marks};
use crate::hierarchy::Dek;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;

/// Builds a write's audit entry from its version and DEK version.
pub(crate) type AuditFn = Box<dyn Fn(u64, u32) -> AuditDraft + Send + Sync>;

/// A write waiting for a commit.
pub(crate) struct Pending {
    /// Set by [`Vault::write_queued`]: who queued it.
    pub(crate) id: u64,
    pub(crate) path: String,
    pub(crate) namespace: String,
    pub(crate) value: SecretBytes,
    pub(crate) existing: Existing,
    pub(crate) audit: AuditFn,
    pub(crate) done: oneshot::Sender<Result<(u64, String), VaultError>>,
}

/// Removes a write from the queue when its caller goes away before a leader took it.
struct Unqueue<'a> {
    vault: &'a Vault,
    id: u64,
}

impl Drop for Unqueue<'_> {
    fn drop(&mut self) {
        super::lock(&self.vault.put_queue).retain(|p| p.id != self.id);
    }
}

/// One write prepared on top of the batch so far.
struct Prepared {
    put: SecretPut,
    version: u64,
    mark: MarkUpdate,
}

impl Vault {
    /// Queues a write and returns once it (with whatever else was queued) is committed.
    pub(crate) async fn write_queued(&self, item: Pending) -> Result<(u64, String), VaultError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (done, mut rx) = oneshot::channel();
        let item = Pending { id, done, ..item };
        super::lock(&self.put_queue).push(item);
        // A caller that gives up (its future dropped) takes its write back out of the queue if
        // no leader has taken it yet: it is never applied later, behind the caller's back.
        let _unqueue = Unqueue { vault: self, id };
        loop {
            let _writes = self.authority.write_lock().await;
            match rx.try_recv() {
                Ok(outcome) => return outcome,
                Err(oneshot::error::TryRecvError::Closed) => {
                    // The leader that took it was cancelled mid-commit: the write may or may
                    // not be stored.
                    return Err(VaultError::Store(StoreError::Unavailable(
                        "the commit carrying this write was abandoned; read the secret to see \
                         whether it was stored"
                            .into(),
                    )));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<Pending> = {
                let mut q = super::lock(&self.put_queue);
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            self.commit_batch(batch).await;
        }
    }

    /// Commits `batch` (the caller holds the write lock) and answers every write in it.
    async fn commit_batch(&self, batch: Vec<Pending>) {
        if batch.len() == 1 {
            for p in batch {
                let r = self.write_alone(&p).await;
                let _ = p.done.send(r);
            }
            return;
        }
        let paths = batch.iter().map(|p| p.path.clone()).collect();
        let nexts = match self.store.vault_next_versions(paths).await {
            Ok(n) => n,
            Err(e) => {
                let msg = e.to_string();
                let unavailable = matches!(e, StoreError::Unavailable(_));
                for p in batch {
                    let e = if unavailable {
                        StoreError::Unavailable(msg.clone())
                    } else {
                        StoreError::Backend(msg.clone())
                    };
                    let _ = p.done.send(Err(VaultError::Store(e)));
                }
                return;
            }
        };
        let mut marks: HashMap<String, (Option<Vec<u8>>, Marks)> = HashMap::new();
        let mut deks: HashMap<String, Arc<Dek>> = HashMap::new();
        let mut written: HashSet<String> = HashSet::new();
        let mut prepared: Vec<(Pending, Prepared)> = Vec::with_capacity(batch.len());
        // Writes whose refusal would depend on an earlier write of this batch: decided after
        // the commit, alone, so they never rest on a write that did not happen.
        let mut deferred: Vec<Pending> = Vec::new();
        for (p, store_next) in batch.into_iter().zip(nexts) {
            if written.contains(&p.path) && p.existing != Existing::May {
                deferred.push(p);
                continue;
            }
            match self
                .prepare(&p, store_next, &mut marks, &mut deks, &mut written)
                .await
            {
                Ok(w) => prepared.push((p, w)),
                Err(e) => {
                    let _ = p.done.send(Err(e));
                }
            }
        }
        if !prepared.is_empty() {
            self.commit_prepared(prepared).await;
        }
        for p in deferred {
            let r = self.write_alone(&p).await;
            let _ = p.done.send(r);
        }
    }

    /// Stores prepared writes in one transaction and answers them.
    async fn commit_prepared(&self, prepared: Vec<(Pending, Prepared)>) {
        let puts = prepared.iter().map(|(_, w)| w.put.clone()).collect();
        // Each namespace's last mark is what keyvault holds if the batch commits; until the
        // store answers, that outcome is in doubt against the mark before the batch.
        let mut last: HashMap<String, MarkUpdate> = HashMap::new();
        let mut before: HashMap<String, Option<Vec<u8>>> = HashMap::new();
        for (_, w) in &prepared {
            let ns = w.mark.namespace().to_owned();
            before
                .entry(ns.clone())
                .or_insert_with(|| w.mark.write.expect.clone());
            last.insert(ns, w.mark.clone());
        }
        let in_doubt: Vec<MarkUpdate> = last
            .values()
            .map(|m| {
                let mut d = m.clone();
                d.write.expect = before.get(m.namespace()).cloned().flatten();
                d
            })
            .collect();
        self.authority.marking(&in_doubt.iter().collect::<Vec<_>>());
        match self.store.vault_put_secrets(puts).await {
            Ok(times) => {
                for (_, m) in last {
                    self.authority.marked(m);
                }
                for ((p, w), at) in prepared.into_iter().zip(times) {
                    let _ = p.done.send(Ok((w.version, at)));
                }
            }
            Err(StoreError::Conflict(_)) => {
                // Nothing of the batch was stored: each write again, alone, with retries.
                self.authority.not_marked(last.keys().map(String::as_str));
                for (p, _) in prepared {
                    let r = self.write_alone(&p).await;
                    let _ = p.done.send(r);
                }
            }
            Err(e) => {
                // The commit may or may not have happened: the marks stay in doubt until their
                // next use settles them from the database.
                let msg = e.to_string();
                let unavailable = matches!(e, StoreError::Unavailable(_));
                tracing::warn!(error = %msg, "a group commit of secret writes failed");
                for (p, _) in prepared {
                    let e = if unavailable {
                        StoreError::Unavailable(msg.clone())
                    } else {
                        StoreError::Backend(msg.clone())
                    };
                    let _ = p.done.send(Err(VaultError::Store(e)));
                }
            }
        }
    }

    /// Prepares one write on top of the batch so far: its version above both the database's
    /// next and keyvault's mark, its mark, its ciphertext under the namespace's current DEK.
    async fn prepare(
        &self,
        p: &Pending,
        store_next: u64,
        marks: &mut HashMap<String, (Option<Vec<u8>>, Marks)>,
        deks: &mut HashMap<String, Arc<Dek>>,
        written: &mut HashSet<String>,
    ) -> Result<Prepared, VaultError> {
        // Whether it exists: in the database, or written earlier in this batch.
        let exists = store_next != 1 || written.contains(&p.path);
        match p.existing {
            Existing::Must if !exists => return Err(VaultError::NotFound(p.path.clone())),
            Existing::MustNot if exists => return Err(VaultError::KeyExists(p.path.clone())),
            _ => {}
        }
        if !marks.contains_key(&p.namespace) {
            let m = self.authority.marks(&p.namespace).await?;
            marks.insert(p.namespace.clone(), m);
        }
        let current = marks
            .get(&p.namespace)
            .cloned()
            .unwrap_or((None, Marks::new()));
        let marked = current.1.get(&p.path).map(|m| m.version + 1).unwrap_or(1);
        let version = store_next.max(marked);
        // keyvault's own record counts too: a database hiding an existing record does not
        // make it new.
        if p.existing == Existing::MustNot && version != 1 {
            return Err(VaultError::KeyExists(p.path.clone()));
        }
        let mark =
            self.authority
                .mark_after(&p.namespace, &current, &p.path, Mark::written(version))?;
        let dek = match deks.get(&p.namespace) {
            Some(d) => d.clone(),
            None => {
                let d = self.current_dek(&p.namespace).await?;
                deks.insert(p.namespace.clone(), d.clone());
                d
            }
        };
        let ciphertext = dek.encrypt_value(&p.path, version, p.value.expose())?;
        marks.insert(p.namespace.clone(), mark.after());
        written.insert(p.path.clone());
        Ok(Prepared {
            put: SecretPut {
                secret: SecretRecord {
                    path: p.path.clone(),
                    version,
                    namespace: p.namespace.clone(),
                    dek_version: dek.version,
                    ciphertext,
                    created_at: String::new(),
                },
                audit: (p.audit)(version, dek.version),
                extra: vec![mark.write.clone()],
            },
            version,
            mark,
        })
    }
}
