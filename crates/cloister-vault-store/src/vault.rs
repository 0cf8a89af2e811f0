//! keyvault's persistent state: ciphertext only (sealed root, wrapped keys, encrypted values).
//!
//! Every mutation that matters for security takes the [`AuditDraft`] describing it and
//! appends it in the same transaction, so a crash can never keep the change and lose its audit
//! entry (or the reverse).

use async_trait::async_trait;
use cloister_audit::AuditDraft;

use crate::authority::AuthorityWrite;
use cloister_db::StoreError;

/// The sealed root key and its recovery copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRecord {
    /// Root key id (hex).
    pub root_id: String,
    /// Measurement the root is sealed to (hex).
    pub measurement: String,
    /// Root sealed with the TEE sealing key.
    pub sealed: Vec<u8>,
    /// Root wrapped with the operator's recovery key.
    pub recovery: Vec<u8>,
    /// When the vault was initialised (set by the store).
    pub created_at: String,
}

/// A master encryption key wrapped by the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MekRecord {
    /// MEK id (hex).
    pub id: String,
    /// Id of the key that wraps it (the root id).
    pub kek_id: String,
    /// Wrapped key bytes.
    pub wrapped: Vec<u8>,
    /// Whether new DEKs are wrapped by this MEK.
    pub active: bool,
    /// Creation time (set by the store).
    pub created_at: String,
}

/// A data encryption key of one namespace and version, wrapped by a MEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DekRecord {
    /// Namespace (`function-<id>`).
    pub namespace: String,
    /// Version within the namespace, from 1.
    pub version: u32,
    /// DEK id (hex).
    pub id: String,
    /// Id of the MEK that wraps it.
    pub mek_id: String,
    /// Wrapped key bytes.
    pub wrapped: Vec<u8>,
    /// Creation time (set by the store).
    pub created_at: String,
}

/// One encrypted version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    /// Full secret path.
    pub path: String,
    /// Version of the value, from 1.
    pub version: u64,
    /// Namespace of the path.
    pub namespace: String,
    /// Version of the namespace DEK that encrypts it.
    pub dek_version: u32,
    /// AES-256-GCM ciphertext bound to (path, version, DEK id).
    pub ciphertext: Vec<u8>,
    /// When this version was stored (set by the store on insert).
    pub created_at: String,
}

/// One put of a group commit: the record, its audit entry and the authority rows written
/// with it (compare-and-set), as [`VaultStore::vault_put_secret`] takes them.
#[derive(Debug, Clone)]
pub struct SecretPut {
    /// The encrypted version to insert.
    pub secret: SecretRecord,
    /// Its audit entry.
    pub audit: AuditDraft,
    /// Rows written in the same transaction.
    pub extra: Vec<AuthorityWrite>,
}

/// Metadata of one secret (no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSummary {
    /// Full path.
    pub path: String,
    /// Latest version.
    pub latest_version: u64,
    /// Number of stored versions.
    pub versions: u64,
    /// When the oldest kept version was stored.
    pub created_at: String,
    /// When the latest version was stored.
    pub updated_at: String,
}

/// Metadata of one version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersionInfo {
    /// Version number.
    pub version: u64,
    /// DEK version encrypting it.
    pub dek_version: u32,
    /// When it was stored.
    pub created_at: String,
}

/// One namespace's change counter, with the store-wide order in which it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochChange {
    /// Namespace (`function-<id>`).
    pub namespace: String,
    /// Its change counter.
    pub epoch: u64,
    /// Store-wide sequence of its last change (increasing across every namespace).
    pub changed: u64,
}

/// Storage of the keyvault role.
#[async_trait]
pub trait VaultStore: Send + Sync + 'static {
    /// The sealed root, if the vault was initialised.
    async fn vault_root(&self) -> Result<Option<RootRecord>, StoreError>;
    /// Stores the root and the first MEK; `Conflict` if the vault already exists.
    async fn vault_init(
        &self,
        root: RootRecord,
        mek: MekRecord,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Replaces the sealed root (migration to a new measurement).
    async fn vault_reseal(
        &self,
        measurement: String,
        sealed: Vec<u8>,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Every MEK.
    async fn vault_meks(&self) -> Result<Vec<MekRecord>, StoreError>;
    /// DEKs of one namespace, or of all namespaces, ordered by namespace then version.
    async fn vault_deks(&self, namespace: Option<String>) -> Result<Vec<DekRecord>, StoreError>;
    /// Adds the first DEK of a namespace; `Conflict` if it already has one.
    async fn vault_add_dek(&self, dek: DekRecord) -> Result<(), StoreError>;
    /// Activates a new MEK and replaces every DEK's wrapping; `Conflict` if `rewrapped` does
    /// not cover every DEK (one was added meanwhile).
    async fn vault_rotate_mek(
        &self,
        mek: MekRecord,
        rewrapped: Vec<DekRecord>,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Adds the next DEK version of a namespace and replaces every value of the namespace with
    /// its re-encryption; `Conflict` if the version is not next or a value is missing.
    async fn vault_rotate_dek(
        &self,
        dek: DekRecord,
        reencrypted: Vec<SecretRecord>,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// The version the next put of `path` must use.
    async fn vault_next_version(&self, path: String) -> Result<u64, StoreError>;
    /// [`vault_next_version`](Self::vault_next_version) of each of `paths`, in order.
    async fn vault_next_versions(&self, paths: Vec<String>) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.vault_next_version(p).await?);
        }
        Ok(out)
    }
    /// Inserts a secret version with `extra` authority rows (compare-and-set); `Conflict` if
    /// that version exists or is below the next, a row expectation fails, or the DEK version
    /// is not the namespace's latest. Returns the stored time.
    async fn vault_put_secret(
        &self,
        secret: SecretRecord,
        audit: AuditDraft,
        extra: Vec<AuthorityWrite>,
    ) -> Result<String, StoreError> {
        let mut at = self
            .vault_put_secrets(vec![SecretPut {
                secret,
                audit,
                extra,
            }])
            .await?;
        at.pop()
            .ok_or_else(|| StoreError::Backend("a put returned no time".into()))
    }
    /// Several puts in one transaction (group commit: one durable flush), each checked and
    /// written as [`vault_put_secret`](Self::vault_put_secret) would, in order, each seeing
    /// the ones before it; all or none (`Conflict` when any would conflict). Returns each
    /// put's stored time.
    async fn vault_put_secrets(&self, puts: Vec<SecretPut>) -> Result<Vec<String>, StoreError>;
    /// Latest version of each of `paths` that exists.
    async fn vault_latest(&self, paths: Vec<String>) -> Result<Vec<SecretRecord>, StoreError>;
    /// Every stored version of one path, oldest first.
    async fn vault_records(&self, path: String) -> Result<Vec<SecretRecord>, StoreError>;
    /// Every version of every secret of a namespace.
    async fn vault_namespace_secrets(
        &self,
        namespace: String,
    ) -> Result<Vec<SecretRecord>, StoreError>;
    /// Secrets whose path starts with `prefix`, ordered by path.
    async fn vault_list(&self, prefix: String) -> Result<Vec<SecretSummary>, StoreError>;
    /// Versions of one secret, oldest first (empty if it does not exist).
    async fn vault_versions(&self, path: String) -> Result<Vec<SecretVersionInfo>, StoreError>;
    /// Deletes a secret with all its versions, writing `extra` authority rows in the same
    /// transaction; false if it did not exist.
    async fn vault_delete(
        &self,
        path: String,
        audit: AuditDraft,
        extra: Vec<AuthorityWrite>,
    ) -> Result<bool, StoreError>;
    /// Change counter of a namespace's secrets (bumped by put, delete and DEK rotation).
    async fn vault_epoch(&self, namespace: String) -> Result<u64, StoreError>;
    /// Up to `limit` namespaces whose counter changed after store-wide sequence `after`, in
    /// the order they changed (what gateways poll to keep their epoch caches current).
    async fn vault_epoch_changes(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<EpochChange>, StoreError>;
}
