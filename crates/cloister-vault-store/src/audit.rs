//! The audit log's storage: appends are serialised so that the chain never forks.

use async_trait::async_trait;
use cloister_audit::{AuditDraft, AuditEntry, Checkpoint};

use cloister_db::StoreError;

/// Computes keyvault's MAC (hex) over an audit entry's hash (hex).
pub type AuditMac = std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>;

/// keyvault's hold on the chain, inside its process: the MAC of every entry, and the head it
/// last wrote, which the next append must extend (an entry deleted or added in the database
/// behind its back makes appends fail loudly instead of silently relinking).
pub struct AuditKeeper {
    pub(crate) mac: AuditMac,
    head: std::sync::Mutex<Option<(u64, String)>>,
    pending: std::sync::Mutex<Option<(u64, String)>>,
    /// A head staged by a transaction that never finished (its writer was cancelled): it may
    /// or may not have committed, so the next append accepts either it or `head`.
    doubt: std::sync::Mutex<Option<(u64, String)>>,
}

impl AuditKeeper {
    pub(crate) fn new(mac: AuditMac) -> Self {
        Self {
            mac,
            head: std::sync::Mutex::new(None),
            pending: std::sync::Mutex::new(None),
            doubt: std::sync::Mutex::new(None),
        }
    }

    /// Starts a write transaction: a head still staged belongs to one that never finished.
    pub(crate) fn begin(&self) {
        let stale = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if stale.is_some() {
            *self.doubt.lock().unwrap_or_else(|e| e.into_inner()) = stale;
        }
    }

    /// Whether the database's head `db` is one this process wrote last: the head staged in
    /// this transaction, else the last committed one, or a transaction in doubt's that did
    /// commit (then it becomes the committed head). Before this process's first append there
    /// is nothing to compare with.
    pub(crate) fn accepts(&self, db: Option<(u64, &str)>) -> bool {
        let Some((seq, hash)) = self.expected() else {
            return true;
        };
        let mut doubt = self.doubt.lock().unwrap_or_else(|e| e.into_inner());
        if db == Some((seq, hash.as_str())) {
            *doubt = None;
            return true;
        }
        let staged = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !staged
            && let Some((ds, dh)) = doubt.as_ref()
            && db == Some((*ds, dh.as_str()))
        {
            *self.head.lock().unwrap_or_else(|e| e.into_inner()) = doubt.take();
            return true;
        }
        false
    }

    /// The head the next append must find: pending in this transaction, else the last one
    /// committed (None until the first append of this process).
    pub(crate) fn expected(&self) -> Option<(u64, String)> {
        let p = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        p.or_else(|| self.head.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    pub(crate) fn stage(&self, seq: u64, hash: String) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some((seq, hash));
    }

    /// After a transaction: keep its last entry as the head if it committed.
    pub(crate) fn finish(&self, committed: bool) {
        let p = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if committed && let Some(h) = p {
            *self.head.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        }
    }

    /// [`accepts`](Self::accepts), as the error every append path returns (with the alarm in
    /// the log) when the database's head is not one this process wrote.
    pub(crate) fn check(&self, db: Option<(u64, &str)>) -> Result<(), StoreError> {
        if self.accepts(db) {
            return Ok(());
        }
        let seq = self.expected().map(|e| e.0).unwrap_or(0);
        tracing::error!(
            expected_seq = seq,
            found = ?db.map(|(s, _)| s),
            "ALARM: the audit chain's head is not the entry keyvault last wrote (entries hidden or added in the database); refusing to append"
        );
        Err(StoreError::Corrupt(format!(
            "the audit chain's head is not entry {seq} that keyvault last wrote"
        )))
    }

    /// The last head this process committed.
    pub fn head(&self) -> Option<(u64, String)> {
        self.head.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Append-only storage of audit entries and keyvault's checkpoints.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Chains `draft` after the current head and stores it durably.
    async fn audit_append(&self, draft: AuditDraft) -> Result<AuditEntry, StoreError>;
    /// Chains every draft, in order, in one transaction (group commit); returns the last
    /// sequence number (0 when `drafts` is empty).
    async fn audit_append_many(&self, drafts: Vec<AuditDraft>) -> Result<u64, StoreError>;
    /// Up to `limit` entries with `seq > after`, in order.
    async fn audit_list(&self, after: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
    /// Sequence number and hash of the last entry.
    async fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError>;
    /// Stores a signed checkpoint (idempotent per sequence number).
    async fn audit_add_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), StoreError>;
    /// Every checkpoint, by sequence number.
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    /// MACs every entry appended from now on with `mac` (keyvault's key; set once), and from
    /// then on requires every append to extend the head this process last wrote.
    fn set_audit_mac(&self, mac: AuditMac);
    /// The head this process last wrote (keyvault only; None elsewhere or before any write).
    fn audit_written_head(&self) -> Option<(u64, String)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeper() -> AuditKeeper {
        AuditKeeper::new(std::sync::Arc::new(|h: &str| h.to_owned()))
    }

    #[test]
    fn a_transaction_that_never_finished_is_settled_by_the_database_head() {
        for committed in [true, false] {
            let k = keeper();
            k.begin();
            k.stage(1, "h1".into());
            k.finish(true);
            // A transaction stages entry 2, then its writer is dropped: no finish.
            k.begin();
            k.stage(2, "h2".into());
            // The next transaction finds the database at 2 (it committed) or at 1 (it did not).
            k.begin();
            let db = if committed { (2, "h2") } else { (1, "h1") };
            assert!(k.accepts(Some(db)), "committed={committed}");
            assert_eq!(k.expected(), Some((db.0, db.1.to_owned())));
            // Anything else is still an alarm.
            k.begin();
            assert!(!k.accepts(Some((5, "h5"))));
            assert!(!k.accepts(None));
        }
    }

    #[test]
    fn a_head_written_by_someone_else_is_refused() {
        let k = keeper();
        assert!(
            k.accepts(Some((7, "theirs"))),
            "nothing to compare with yet"
        );
        k.begin();
        k.stage(8, "mine".into());
        k.finish(true);
        k.begin();
        assert!(!k.accepts(Some((9, "theirs"))));
        assert!(k.accepts(Some((8, "mine"))));
    }
}
