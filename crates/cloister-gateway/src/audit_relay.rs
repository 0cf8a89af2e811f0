//! The gateway's view of the audit log: it records the events it sees (deletions, token
//! changes, authentication failures) through keyvault, the only writer of the chain, which
//! MACs them; and it reads pages from keyvault. It has no access to keyvault's store.

use cloister_audit::{AuditDraft, AuditPage};
use cloister_rpc::keyvault::{GatewayEvent, ReadAuditRequest};
use cloister_store::StoreError;

use crate::keyvault::Keyvault;

/// Appends and reads through keyvault.
pub struct AuditRelay {
    keyvault: Option<Keyvault>,
}

impl AuditRelay {
    /// Relays to `keyvault` (without one, every call fails as `unavailable`).
    pub fn new(keyvault: Option<Keyvault>) -> Self {
        Self { keyvault }
    }

    fn keyvault(&self) -> Result<&Keyvault, StoreError> {
        self.keyvault
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("no keyvault keeps the audit log".into()))
    }

    /// Records one event as the gateway reports it; returns its sequence number.
    pub async fn record(&self, draft: AuditDraft) -> Result<u64, StoreError> {
        let kv = self.keyvault()?;
        let ev = GatewayEvent {
            action: draft.action.as_str().to_owned(),
            subject: draft.subject,
            actor: draft.actor,
            details_json: draft.details.to_string(),
        };
        let r = kv
            .client()
            .record_event(kv.request(ev))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "keyvault refused the audit event: {}",
                    e.message()
                ))
            })?;
        Ok(r.into_inner().seq)
    }

    /// Up to `limit` entries after `after`, with keyvault's checkpoints in that range.
    pub async fn page(&self, after: u64, limit: u32) -> Result<AuditPage, StoreError> {
        let kv = self.keyvault()?;
        let r = kv
            .client()
            .read_audit(kv.request(ReadAuditRequest { after, limit }))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "keyvault cannot read the audit log: {}",
                    e.message()
                ))
            })?;
        serde_json::from_str(&r.into_inner().page_json)
            .map_err(|e| StoreError::Corrupt(format!("keyvault's audit page: {e}")))
    }
}
