//! The audit log (ARCHITECTURE §9): append-only entries chained by SHA-256, checkpoints
//! signed by keyvault, and a verifier that names the first sequence number that is wrong.
//!
//! - [`entry`]: what one entry holds and how its hash is computed;
//! - [`checkpoint`]: keyvault's signature over (sequence, hash) at a point in time;
//! - [`verify`]: checks a whole chain plus its checkpoints (edit, deletion, reordering and
//!   truncation are each reported with the first bad sequence number).
//!
//! Entries never hold secret values: callers put names, paths and ids in them only.

pub mod checkpoint;
pub mod entry;
pub mod verify;

pub use checkpoint::Checkpoint;
pub use entry::{Action, AuditDraft, AuditEntry, GENESIS_HASH};
pub use verify::{ChainReport, Problem, verify_chain, verify_chain_with_macs};

/// `GET /v1/audit` response: entries in order and keyvault's signed checkpoints in range.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// Entries after the `after` asked for, in order.
    pub entries: Vec<AuditEntry>,
    /// Checkpoints keyvault signed in this range.
    pub checkpoints: Vec<Checkpoint>,
    /// The `after` of the next page, when this one is full.
    pub next_after: Option<u64>,
}
