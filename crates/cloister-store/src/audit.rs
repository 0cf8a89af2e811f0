//! The audit log's storage: appends are serialised so that the chain never forks.

use async_trait::async_trait;
use cloister_audit::{AuditDraft, AuditEntry, Checkpoint};

use crate::model::StoreError;

/// Computes keyvault's MAC (hex) over an audit entry's hash (hex).
pub type AuditMac = std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>;

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
    /// MACs every entry appended from now on with `mac` (keyvault's key; set once).
    fn set_audit_mac(&self, mac: AuditMac);
}
