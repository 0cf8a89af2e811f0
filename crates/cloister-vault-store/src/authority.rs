//! keyvault's authority rows: identities, function records, manifests, freshness marks. The
//! store keeps them as opaque values with a MAC only keyvault can compute, and writes a group
//! of them atomically with compare-and-set on each, plus the audit entry of the change.

use async_trait::async_trait;
use cloister_audit::AuditDraft;

use cloister_db::StoreError;

/// One stored authority row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityRow {
    /// What it is (`identity`, `function`, `name`, `manifest`, ...).
    pub kind: String,
    /// Its key within the kind.
    pub key: String,
    /// Opaque value (keyvault's encoding).
    pub value: Vec<u8>,
    /// keyvault's MAC over (kind, key, value).
    pub mac: Vec<u8>,
}

/// A compare-and-set write of one row.
#[derive(Debug, Clone)]
pub struct AuthorityWrite {
    /// The new row.
    pub row: AuthorityRow,
    /// The value the row must hold now (`None`: it must not exist).
    pub expect: Option<Vec<u8>>,
}

/// Adds to `draft` the rows written in its transaction, as `details.rows = [[kind, key,
/// hex SHA-256 of the value], ...]`. The audit chain (MACed by keyvault) thus records the
/// latest value of every authority row, and keyvault replays it at start to refuse a row the
/// database put back (an older, genuinely MACed value).
pub fn record_rows(draft: &mut cloister_audit::AuditDraft, writes: &[AuthorityWrite]) {
    use sha2::Digest;
    if writes.is_empty() {
        return;
    }
    let rows: Vec<serde_json::Value> = writes
        .iter()
        .map(|w| {
            serde_json::json!([
                w.row.kind,
                w.row.key,
                hex::encode(sha2::Sha256::digest(&w.row.value))
            ])
        })
        .collect();
    if let serde_json::Value::Object(map) = &mut draft.details {
        map.insert("rows".into(), serde_json::Value::Array(rows));
    }
}

/// Storage of keyvault's authority rows and used nonces.
#[async_trait]
pub trait AuthorityStore: Send + Sync + 'static {
    /// One row.
    async fn authority_get(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<AuthorityRow>, StoreError>;
    /// Every row of a kind, by key.
    async fn authority_list(&self, kind: &str) -> Result<Vec<AuthorityRow>, StoreError>;
    /// Applies every write or none (`Conflict` when an expectation fails), with `audit`, and
    /// bumps the change counter of `bump_namespace` (so executors drop cached grants).
    async fn authority_write(
        &self,
        writes: Vec<AuthorityWrite>,
        audit: Option<AuditDraft>,
        bump_namespace: Option<String>,
    ) -> Result<(), StoreError>;
    /// Records used nonces with their expiry (Unix seconds), in one transaction, and forgets
    /// those expired at `now`.
    async fn nonces_persist(&self, nonces: Vec<(String, u64)>, now: u64) -> Result<(), StoreError>;
    /// The nonces still unexpired at `now`.
    async fn nonces_load(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError>;
}
