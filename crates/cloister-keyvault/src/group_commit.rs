//! Group commit of audit entries: entries appended at the same time share one transaction
//! (one fsync), so signing throughput is not bounded by one disk flush per signature. Each
//! caller still returns only once its entry is committed, with its own sequence number.
//!
//! Leader and followers: a caller queues its entry, then waits for the writer lock. Whoever
//! gets it takes every queued entry and commits them in one `audit_append_many`; the others
//! find their outcome already sent when their turn comes. The commit runs in a task of its
//! own, so a caller that gives up (a dropped future) loses no one else's entry.

use std::sync::{Arc, Mutex};

use crate::vault::KeyvaultStore;
use cloister_audit::AuditDraft;
use tokio::sync::oneshot;

use crate::error::VaultError;

type Outcome = Result<u64, String>;

/// Most entries committed in one transaction.
const MAX_BATCH: usize = 512;

/// The queue of entries waiting for a commit.
#[derive(Default)]
pub struct GroupCommit {
    queue: Mutex<Vec<(AuditDraft, oneshot::Sender<Outcome>)>>,
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Appends `draft` with whatever else is waiting; returns its sequence number once
    /// committed.
    pub async fn append(
        &self,
        store: &Arc<dyn KeyvaultStore>,
        draft: AuditDraft,
    ) -> Result<u64, VaultError> {
        let (tx, mut rx) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((draft, tx));
        loop {
            let writer = self.writer.lock().await;
            match rx.try_recv() {
                Ok(outcome) => return outcome.map_err(failed),
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(failed("the audit commit was abandoned".into()));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<_> = {
                let mut q = self
                    .queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                // Ours was taken by a commit still running (its leader gave up): wait for it.
                drop(writer);
                return rx
                    .await
                    .map_err(|_| failed("the audit commit was abandoned".into()))?
                    .map_err(failed);
            }
            let store = store.clone();
            let commit = tokio::spawn(async move {
                let (drafts, senders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let n = drafts.len() as u64;
                let outcome = store.audit_append_many(drafts).await;
                for (i, s) in senders.into_iter().enumerate() {
                    let _ = s.send(match &outcome {
                        Ok(last) => Ok(last + 1 + i as u64 - n),
                        Err(e) => Err(e.to_string()),
                    });
                }
            });
            let _ = commit.await;
            drop(writer);
            // Ours was in that batch, or (a queue longer than one batch) in a later one.
        }
    }
}

fn failed(reason: String) -> VaultError {
    tracing::error!(%reason, "audit commit failed");
    VaultError::Store(cloister_vault_store::StoreError::Backend(reason))
}
