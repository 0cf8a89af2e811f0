//! The gateway's audit log: reads come from the database (anyone may read; clients verify),
//! appends go to keyvault, the only writer of the chain, which records them as reported by
//! the gateway and MACs them.

use std::sync::Arc;

use async_trait::async_trait;
use cloister_audit::{AuditDraft, AuditEntry, Checkpoint};
use cloister_rpc::keyvault::GatewayEvent;
use cloister_store::{AuditLog, AuditMac, StoreError};

use crate::keyvault::Keyvault;

/// Appends through keyvault, reads from the store.
pub struct RelayedAudit {
    store: Arc<dyn AuditLog>,
    keyvault: Option<Keyvault>,
}

impl RelayedAudit {
    /// Relays appends to `keyvault` (without one, appends fail as `unavailable`).
    pub fn new(store: Arc<dyn AuditLog>, keyvault: Option<Keyvault>) -> Self {
        Self { store, keyvault }
    }
}

#[async_trait]
impl AuditLog for RelayedAudit {
    async fn audit_append(&self, draft: AuditDraft) -> Result<AuditEntry, StoreError> {
        let kv = self
            .keyvault
            .as_ref()
            .ok_or_else(|| StoreError::Backend("no keyvault to record audit events".into()))?;
        let ev = GatewayEvent {
            action: draft.action.as_str().to_owned(),
            subject: draft.subject.clone(),
            actor: draft.actor.clone(),
            details_json: draft.details.to_string(),
        };
        let r = kv
            .client()
            .record_event(kv.request(ev))
            .await
            .map_err(|e| {
                StoreError::Backend(format!("keyvault refused the audit event: {}", e.message()))
            })?
            .into_inner();
        // The caller only needs to know it was recorded; the chain itself is keyvault's.
        let mut entries = self.store.audit_list(r.seq.saturating_sub(1), 1).await?;
        entries
            .pop()
            .ok_or_else(|| StoreError::Backend("the recorded audit entry is missing".into()))
    }

    async fn audit_append_many(&self, _: Vec<AuditDraft>) -> Result<u64, StoreError> {
        Err(StoreError::Backend(
            "the gateway records events one at a time through keyvault".into(),
        ))
    }

    async fn audit_list(&self, after: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.audit_list(after, limit).await
    }

    async fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.store.audit_head().await
    }

    async fn audit_add_checkpoint(&self, _: Checkpoint) -> Result<(), StoreError> {
        Err(StoreError::Backend(
            "only keyvault stores audit checkpoints".into(),
        ))
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.store.audit_checkpoints().await
    }

    fn set_audit_mac(&self, _: AuditMac) {}
}
