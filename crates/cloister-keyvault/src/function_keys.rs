//! Keys keyvault keeps for functions and signs with; the private halves never leave it
//! (docs/CAPABILITIES.md).
//!
//! A key lives in its function's namespace, stored like a secret: each version is a record
//! encrypted under the namespace's DEK with AAD = path + version, freshness-marked (a database
//! holding an older version than keyvault wrote is caught), written with its audit entry in
//! one transaction. Key paths (`function-<id>/@keys/<name>`) are not secret paths (those have
//! four segments and no `@`): the secret API cannot name them, secret listings leave them out
//! and no release ever reads them. Only the newest version signs for functions; an owner
//! may ask an older version by number through the API.

use cloister_audit::{Action, AuditDraft};
use cloister_crypto::keys::{KeyAlgorithm, KeyMaterial, KeySignature, SignHash};
use cloister_types::{KeyLimits, KeyName, KeyOperation, KeyRef, namespace_of};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::authority::RegisteredManifest;
use crate::error::VaultError;
use crate::key_record::StoredKey;
use crate::vault::{Existing, Vault};

/// Most bytes one signature request may cover (whatever a manifest's limits say).
pub const MAX_SIGN_MESSAGE_BYTES: usize =
    cloister_types::key_limits::MAX_SIGN_MESSAGE_BYTES as usize;

/// No limits: what a key the manifest declares without any gets.
static NO_LIMITS: KeyLimits = KeyLimits {
    operations: None,
    hashes: None,
    max_message_bytes: None,
    rate: None,
    prefix: None,
};

/// A declared key, resolved: whose namespace holds it, its name there, and the manifest
/// whose limits govern this use.
struct Resolved {
    /// The function whose namespace holds the key.
    holder: String,
    /// The key's name in that namespace.
    name: KeyName,
    /// The declaration as the manifest writes it (`NAME` or `FUNCTION/NAME`).
    declared: String,
    /// The manifest whose limits govern the use.
    source: Arc<RegisteredManifest>,
    /// For another function's key: the limits its owner set on the grant.
    grant_limits: Option<KeyLimits>,
}

impl Resolved {
    fn limits(&self) -> &KeyLimits {
        self.source
            .manifest
            .key_limits
            .get(&self.declared)
            .unwrap_or(&NO_LIMITS)
    }

    fn limit(&self, violation: cloister_types::key_limits::KeyLimitViolation) -> VaultError {
        VaultError::KeyLimit {
            key: self.declared.clone(),
            violation,
        }
    }
}

/// Key `declared` if `manifest` declares it (`key_not_declared` otherwise): one of the
/// function's own, or another function's (`FUNCTION/NAME`) that its owner granted to this
/// function (`key_not_granted` otherwise, checked on every use so a revocation holds at once).
async fn resolve(
    vault: &Vault,
    manifest: &Arc<RegisteredManifest>,
    declared: &str,
) -> Result<Resolved, VaultError> {
    if !manifest.manifest.keys.iter().any(|k| k == declared) {
        return Err(VaultError::KeyNotDeclared(declared.to_owned()));
    }
    let (holder, name, grant_limits) =
        match KeyRef::parse(declared).map_err(|e| VaultError::Invalid(e.to_string()))? {
            KeyRef::Own(name) => (manifest.function_id.clone(), name, None),
            KeyRef::Granted { function, name } => {
                let not_granted = || VaultError::KeyNotGranted(declared.to_owned());
                let holder = vault
                    .authority()
                    .function_by_name(function.as_str())
                    .await?
                    .ok_or_else(not_granted)?;
                let grants = vault.key_grants(&holder.function_id, &name).await?;
                let entry = grants.get(&manifest.function_id).ok_or_else(not_granted)?;
                // A grant made with a key later revoked as compromised is not honoured.
                if vault.authority().compromised(&entry.granted_by) {
                    return Err(not_granted());
                }
                (holder.function_id.clone(), name, Some(entry.limits.clone()))
            }
        };
    let source = vault
        .authority()
        .key_limits_source(manifest, declared)
        .await?;
    Ok(Resolved {
        holder,
        name,
        declared: declared.to_owned(),
        source,
        grant_limits,
    })
}

/// Where the grants of key `name` of function `function_id` are stored.
fn grants_path(function_id: &str, name: &KeyName) -> String {
    format!("{}/@grants/{name}", namespace_of(function_id))
}

/// Where key `name` of function `function_id` is stored.
pub fn key_path(function_id: &str, name: &KeyName) -> String {
    format!("{}/@keys/{name}", namespace_of(function_id))
}

/// How long a key read from the database is served from memory before it is read (and
/// checked fresh) again; a key this keyvault writes replaces its entry at once.
pub const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Most keys kept in memory.
const KEY_CACHE_MAX: usize = 10_000;

/// A cached key: its version, the key, when it was read or written.
type CachedKey = (u64, Arc<StoredKey>, std::time::Instant);

/// The newest version of recently used keys, decrypted (zeroized when dropped): a signature
/// needs no database read. Entries only move to newer versions, so a read racing a rotation
/// cannot put the older version back.
#[derive(Default)]
pub struct KeyCache {
    entries: std::sync::Mutex<HashMap<String, CachedKey>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedKey>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, path: &str) -> Option<(u64, Arc<StoredKey>)> {
        let entries = self.lock();
        let (v, k, at) = entries.get(path)?;
        (at.elapsed() < KEY_CACHE_TTL).then(|| (*v, k.clone()))
    }

    fn put(&self, path: &str, version: u64, key: Arc<StoredKey>) {
        let mut entries = self.lock();
        if entries.len() >= KEY_CACHE_MAX && !entries.contains_key(path) {
            entries.clear();
        }
        match entries.get_mut(path) {
            Some(e) if e.0 > version => {}
            Some(e) => *e = (version, key, std::time::Instant::now()),
            None => {
                entries.insert(path.to_owned(), (version, key, std::time::Instant::now()));
            }
        }
    }

    /// Forgets every key (the database was replaced).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// A key's public facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's name.
    pub name: String,
    /// Its algorithm.
    pub algorithm: KeyAlgorithm,
    /// Its newest version.
    pub version: u64,
    /// The public key of that version (none for HMAC).
    pub public_key: Option<Vec<u8>>,
    /// Whether the key may ever leave keyvault (sealed, by an owner- and admin-signed export).
    pub exportable: bool,
    /// Whether this version was imported (its secret existed outside keyvault before).
    pub imported: bool,
}

/// One function a key is granted to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrantEntry {
    /// The grantee's name when granted.
    pub function: String,
    /// The identity that granted it: a grant by an identity later revoked as compromised is
    /// no longer honoured.
    pub granted_by: String,
    /// The key owner's limits on the grantee's use, on top of the grantee's own.
    #[serde(default)]
    pub limits: KeyLimits,
}

/// One signature made for a function.
#[derive(Debug, Clone)]
pub struct FunctionSignature {
    /// The key that signed.
    pub key: KeyInfo,
    /// The signature.
    pub signature: KeySignature,
}

/// What an owner asks of a key through the API.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum OwnerKeyOp<'a> {
    /// Sign the message.
    Sign,
    /// Check this signature over the message.
    Verify {
        /// The signature.
        signature: &'a [u8],
    },
}

/// An owner's use of one key.
#[derive(Debug, Clone, Copy)]
pub struct OwnerKeyRequest<'a> {
    /// The key.
    pub name: &'a KeyName,
    /// The version to use (none: the newest signs, every version is tried by a check).
    pub version: Option<u64>,
    /// The message.
    pub message: &'a [u8],
    /// How an ECDSA key hashes it.
    pub hash: SignHash,
    /// Sign or check.
    pub op: OwnerKeyOp<'a>,
}

/// A key sealed to an export's recipient.
#[derive(Debug, Clone)]
pub struct ExportedKey {
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// The version exported.
    pub version: u64,
    /// HPKE to the recipient: the key's 32 secret bytes.
    pub sealed: Vec<u8>,
    /// The public key of that version (none for HMAC).
    pub public_key: Option<Vec<u8>>,
    /// keyvault's audit-key signature over `cloister_types::binding::key_export_message`.
    pub keyvault_signature: [u8; 64],
}

/// The result of an owner's key use.
#[derive(Debug, Clone)]
pub struct OwnerKeyResult {
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// The version that signed, that the signature matched, or (no match) the newest tried.
    pub version: u64,
    /// The signature made (signing only).
    pub signature: Option<KeySignature>,
    /// Whether the signature checked out (checking only).
    pub valid: Option<bool>,
}

impl Vault {
    /// Creates key `name` of `algorithm` in `function_id`'s namespace (an owner's signed
    /// request was checked by the caller); refused if the name is taken. An exportable key
    /// can later be exported sealed; any other has no export path at all.
    pub async fn create_key(
        &self,
        function_id: &str,
        name: &KeyName,
        algorithm: KeyAlgorithm,
        exportable: bool,
        actor: &str,
    ) -> Result<KeyInfo, VaultError> {
        let key =
            KeyMaterial::generate(algorithm).map_err(|e| VaultError::Invalid(e.to_string()))?;
        let stored = StoredKey {
            key,
            exportable,
            imported: false,
        };
        self.store_key(
            function_id,
            name,
            stored,
            Existing::MustNot,
            AuditDraft::new(actor, Action::KeyCreate, key_path(function_id, name)),
        )
        .await
    }

    /// Imports a key made elsewhere as key `name`: `sealed` is its 32 secret bytes sealed to
    /// keyvault's HPKE key for this function and name (the owner's signed request, which
    /// binds the SHA-256 of `sealed`, was checked by the caller). Refused if the name is taken.
    #[allow(clippy::too_many_arguments)]
    pub async fn import_key(
        &self,
        function_id: &str,
        name: &KeyName,
        algorithm: KeyAlgorithm,
        sealed: &[u8],
        exportable: bool,
        actor: &str,
    ) -> Result<KeyInfo, VaultError> {
        let secret = self
            .hpke_open(
                &cloister_types::binding::key_import_info(function_id, name.as_str()),
                sealed,
            )
            .map_err(|_| VaultError::BadSealedValue)?;
        let key = KeyMaterial::from_secret(algorithm, secret.expose())
            .map_err(|e| VaultError::Invalid(format!("the imported {algorithm} key: {e}")))?;
        let stored = StoredKey {
            key,
            exportable,
            imported: true,
        };
        self.store_key(
            function_id,
            name,
            stored,
            Existing::MustNot,
            AuditDraft::new(actor, Action::KeyCreate, key_path(function_id, name))
                .detail("imported", true),
        )
        .await
    }

    /// Gives key `name` a new version of the same algorithm (and exportability).
    pub async fn rotate_key(
        &self,
        function_id: &str,
        name: &KeyName,
        actor: &str,
    ) -> Result<KeyInfo, VaultError> {
        let (_, old) = self.load_key(function_id, name).await?;
        let key = KeyMaterial::generate(old.algorithm())
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let stored = StoredKey {
            key,
            exportable: old.exportable,
            imported: false,
        };
        self.store_key(
            function_id,
            name,
            stored,
            Existing::Must,
            AuditDraft::new(actor, Action::KeyRotate, key_path(function_id, name)),
        )
        .await
    }

    /// Exports version `version` (or the newest) of key `name`, sealed to `recipient`, for an
    /// export an owner and an admin both signed (checked by the caller). A key created
    /// without `exportable` is refused (`key_not_exportable`) before anything is sealed.
    pub async fn export_key(
        &self,
        function_id: &str,
        name: &KeyName,
        version: Option<u64>,
        recipient: &cloister_crypto::HpkePublicKey,
        actors: (&str, &str),
        request_sha256: &[u8; 32],
    ) -> Result<ExportedKey, VaultError> {
        let mut versions = self.load_key_versions(function_id, name).await?;
        let (version, key) = match version {
            Some(v) => versions
                .into_iter()
                .find(|(n, _)| *n == v)
                .ok_or_else(|| VaultError::KeyNotFound(format!("{name} version {v}")))?,
            None => versions
                .pop()
                .ok_or_else(|| VaultError::KeyNotFound(name.to_string()))?,
        };
        if !key.exportable {
            return Err(VaultError::KeyNotExportable(name.to_string()));
        }
        let info = cloister_types::binding::key_export_info(
            function_id,
            name.as_str(),
            key.algorithm().as_str(),
            version,
        );
        let stored = key.to_stored();
        // The stored form is the algorithm tag and the 32 secret bytes; the recipient gets the
        // secret bytes (the algorithm is in the info and the reply).
        let sealed = recipient
            .seal(&info, b"", &stored[1..])
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let public_key = key
            .public_key()
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let sealed_sha256 = Sha256::digest(&sealed);
        self.audit(
            AuditDraft::new(actors.0, Action::KeyExport, key_path(function_id, name))
                .detail("key_version", version)
                .detail("algorithm", key.algorithm().as_str())
                .detail("admin", actors.1)
                .detail("recipient", recipient.to_hex())
                .detail("sealed_sha256", hex::encode(sealed_sha256)),
        )
        .await?;
        let keyvault_signature = self.sign_key_export(
            request_sha256,
            &info,
            &recipient.0,
            public_key.as_deref().unwrap_or_default(),
            &sealed_sha256,
        );
        Ok(ExportedKey {
            algorithm: key.algorithm(),
            version,
            sealed,
            public_key,
            keyvault_signature,
        })
    }

    /// The public facts of key `name`'s newest version.
    pub async fn key_info(&self, function_id: &str, name: &KeyName) -> Result<KeyInfo, VaultError> {
        let (version, key) = self.load_key(function_id, name).await?;
        info(name, version, &key)
    }

    /// Every key of `function_id`, by name.
    pub async fn list_keys(&self, function_id: &str) -> Result<Vec<KeyInfo>, VaultError> {
        let prefix = format!("{}/@keys/", namespace_of(function_id));
        let mut out = Vec::new();
        for summary in self.store().vault_list(prefix.clone()).await? {
            let Some(name) = summary
                .path
                .strip_prefix(&prefix)
                .and_then(|n| KeyName::parse(n).ok())
            else {
                continue;
            };
            out.push(self.key_info(function_id, &name).await?);
        }
        Ok(out)
    }

    /// Every version of key `name` of `function_id`, oldest first.
    pub async fn key_versions(
        &self,
        function_id: &str,
        name: &KeyName,
    ) -> Result<Vec<KeyInfo>, VaultError> {
        let versions = self.load_key_versions(function_id, name).await?;
        if versions.is_empty() {
            return Err(VaultError::KeyNotFound(name.to_string()));
        }
        let mut out = versions
            .iter()
            .map(|(v, key)| info(name, *v, key))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|k| k.version);
        Ok(out)
    }

    /// The public half of key `name` for an invocation of the function `manifest` describes
    /// (its run authorised by the caller): the manifest must declare the key and its limits
    /// allow `publicKey`.
    pub async fn public_key_for_function(
        &self,
        manifest: &Arc<RegisteredManifest>,
        name: &str,
    ) -> Result<KeyInfo, VaultError> {
        let k = resolve(self, manifest, name).await?;
        k.limits()
            .allows(KeyOperation::PublicKey)
            .map_err(|v| k.limit(v))?;
        if let Some(g) = &k.grant_limits {
            g.allows(KeyOperation::PublicKey).map_err(|v| k.limit(v))?;
        }
        let mut info = self.key_info(&k.holder, &k.name).await?;
        info.name = k.declared;
        Ok(info)
    }

    /// Signs `message` with key `name` for an invocation of the function `manifest` describes
    /// (its executor attested and keyvault authorised the run): the manifest must declare the
    /// key, and the use must be within the limits in force on it (operation, hash, size,
    /// prefix, then rate: a refused request spends no rate). Every signature is audited
    /// before it is returned.
    pub async fn sign_for_function(
        &self,
        manifest: &Arc<RegisteredManifest>,
        name: &str,
        message: &[u8],
        hash: SignHash,
        execution_id: &str,
        executor: &str,
    ) -> Result<FunctionSignature, VaultError> {
        let k = resolve(self, manifest, name).await?;
        let limits = k.limits();
        limits.check_sign(message, hash).map_err(|v| k.limit(v))?;
        // A granted key: the key owner's limits on the grant bind too.
        if let Some(g) = &k.grant_limits {
            g.check_sign(message, hash).map_err(|v| k.limit(v))?;
        }
        let declared = k.declared.clone();
        let spent = |rate: cloister_types::KeyRate| {
            let key = declared.clone();
            move |spent: crate::key_rates::RateSpent| VaultError::KeyRateLimited {
                key,
                rate,
                retry_after_ms: u64::try_from(spent.retry_after.as_millis()).unwrap_or(u64::MAX),
            }
        };
        if let Some(rate) = limits.rate {
            self.key_rates()
                .take(&manifest.function_id, &k.declared, rate)
                .map_err(spent(rate))?;
        }
        if let Some(rate) = k.grant_limits.as_ref().and_then(|g| g.rate) {
            // Counted in a bucket of the key owner's grant, apart from the grantee's own.
            self.key_rates()
                .take(
                    &k.holder,
                    &format!("{}@grant:{}", k.name, manifest.function_id),
                    rate,
                )
                .map_err(spent(rate))?;
        }
        let (version, key) = self.load_key(&k.holder, &k.name).await?;
        let signature = key
            .sign(message, hash)
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let mut audit = AuditDraft::new(executor, Action::KeySign, namespace_of(&k.holder))
            .detail("key", k.name.as_str())
            .detail("key_version", version)
            .detail("algorithm", key.algorithm().as_str())
            .detail("hash", hash.as_str())
            .detail("message_sha256", hex::encode(Sha256::digest(message)))
            .detail("function_version", manifest.version)
            .detail("execution_id", execution_id);
        if k.holder != manifest.function_id {
            audit = audit
                .detail("granted_to", manifest.function_id.as_str())
                .detail("granted_to_name", manifest.manifest.name.as_str());
        }
        self.audit(audit).await?;
        let mut shown = info(&k.name, version, &key)?;
        // A function whose limits leave out `publicKey` is not handed the public key with the
        // signature either (though a secp256k1 signature and its recovery id reveal it).
        if k.limits().allows(KeyOperation::PublicKey).is_err()
            || k.grant_limits
                .as_ref()
                .is_some_and(|g| g.allows(KeyOperation::PublicKey).is_err())
        {
            shown.public_key = None;
        }
        shown.name = k.declared;
        Ok(FunctionSignature {
            key: shown,
            signature,
        })
    }

    /// An owner's use of a key of `function_id` through the API (the owner's signed request
    /// was checked by the caller): a signature with the newest version (or the version
    /// asked), or a check of a signature against the version asked (or every version,
    /// newest first). Not bound by manifests' limits, which bind functions. Audited as
    /// `key.sign` or `key.verify` before the result is returned.
    pub async fn use_key_as_owner(
        &self,
        function_id: &str,
        request: OwnerKeyRequest<'_>,
        actor: &str,
    ) -> Result<OwnerKeyResult, VaultError> {
        let OwnerKeyRequest {
            name,
            version,
            message,
            hash,
            op,
        } = request;
        if message.len() > MAX_SIGN_MESSAGE_BYTES {
            return Err(VaultError::KeyLimit {
                key: name.to_string(),
                violation: cloister_types::key_limits::KeyLimitViolation::MessageTooLarge {
                    bytes: message.len(),
                    max: cloister_types::key_limits::MAX_SIGN_MESSAGE_BYTES,
                },
            });
        }
        let mut versions = self.load_key_versions(function_id, name).await?;
        if let Some(wanted) = version {
            versions.retain(|(v, _)| *v == wanted);
            if versions.is_empty() {
                return Err(VaultError::KeyNotFound(format!("{name} version {wanted}")));
            }
        }
        // Newest first.
        versions.reverse();
        let Some((newest, newest_key)) = versions.first() else {
            return Err(VaultError::KeyNotFound(name.to_string()));
        };
        let algorithm = newest_key.algorithm();
        let base = |action| {
            AuditDraft::new(actor, action, key_path(function_id, name))
                .detail("via", "api")
                .detail("algorithm", algorithm.as_str())
                .detail("hash", hash.as_str())
                .detail("message_sha256", hex::encode(Sha256::digest(message)))
        };
        match op {
            OwnerKeyOp::Sign => {
                let signature = newest_key
                    .sign(message, hash)
                    .map_err(|e| VaultError::Invalid(e.to_string()))?;
                self.audit(base(Action::KeySign).detail("key_version", *newest))
                    .await?;
                Ok(OwnerKeyResult {
                    algorithm,
                    version: *newest,
                    signature: Some(signature),
                    valid: None,
                })
            }
            OwnerKeyOp::Verify { signature } => {
                let mut matched = None;
                for (v, key) in &versions {
                    if key
                        .verify(message, hash, signature)
                        .map_err(|e| VaultError::Invalid(e.to_string()))?
                    {
                        matched = Some(*v);
                        break;
                    }
                }
                let audit = base(Action::KeyVerify)
                    .detail("key_version", matched.unwrap_or(*newest))
                    .detail("valid", matched.is_some())
                    .detail("signature_sha256", hex::encode(Sha256::digest(signature)));
                self.audit(audit).await?;
                Ok(OwnerKeyResult {
                    algorithm,
                    version: matched.unwrap_or(*newest),
                    signature: None,
                    valid: Some(matched.is_some()),
                })
            }
        }
    }

    /// Every version of key `name`, oldest first; the newest checked fresh as for a read.
    async fn load_key_versions(
        &self,
        function_id: &str,
        name: &KeyName,
    ) -> Result<Vec<(u64, StoredKey)>, VaultError> {
        let p = key_path(function_id, name);
        self.read_record_versions(&p, &namespace_of(function_id))
            .await?
            .into_iter()
            .map(|(v, stored)| Ok((v, StoredKey::decode(stored.expose()).ok_or_else(corrupt)?)))
            .collect()
    }

    /// The functions key `name` of `function_id` is granted to, by function id.
    /// Freshness-checked like the key itself, so a database cannot bring back a revoked grant.
    pub async fn key_grants(
        &self,
        function_id: &str,
        name: &KeyName,
    ) -> Result<BTreeMap<String, GrantEntry>, VaultError> {
        match self
            .read_record(&grants_path(function_id, name), &namespace_of(function_id))
            .await?
        {
            None => Ok(BTreeMap::new()),
            Some((_, bytes)) => serde_json::from_slice(bytes.expose()).map_err(|_| {
                VaultError::Keys(crate::KeyvaultError::Corrupt { what: "key grants" })
            }),
        }
    }

    /// Grants (or, `grant` false, withdraws) the use of key `name` of `function_id` to the
    /// function `grantee_id` named `grantee`, within `limits` (an owner's signed request was
    /// checked by the caller, and the grantee's name binding). Returns the grants in force
    /// after.
    #[allow(clippy::too_many_arguments)]
    pub async fn grant_key(
        &self,
        function_id: &str,
        name: &KeyName,
        grantee_id: &str,
        grantee: &str,
        grant: Option<KeyLimits>,
        actor: &str,
    ) -> Result<BTreeMap<String, GrantEntry>, VaultError> {
        if grantee_id == function_id {
            return Err(VaultError::Invalid(
                "a function uses its own keys without a grant".into(),
            ));
        }
        if let Some(l) = &grant {
            l.validate()
                .map_err(|e| VaultError::Invalid(e.to_string()))?;
        }
        // The key must exist (a grant of nothing is a mistake).
        self.load_key(function_id, name).await?;
        let mut grants = self.key_grants(function_id, name).await?;
        let granting = grant.is_some();
        let changed = match grant {
            Some(limits) => {
                let entry = GrantEntry {
                    function: grantee.to_owned(),
                    granted_by: actor.to_owned(),
                    limits,
                };
                grants.insert(grantee_id.to_owned(), entry.clone()) != Some(entry)
            }
            None => grants.remove(grantee_id).is_some(),
        };
        if !changed {
            return Ok(grants);
        }
        let bytes = serde_json::to_vec(&grants).map_err(|e| VaultError::Invalid(e.to_string()))?;
        let p = grants_path(function_id, name);
        let action = if granting {
            Action::KeyGrant
        } else {
            Action::KeyRevoke
        };
        let limits = grants
            .get(grantee_id)
            .map(|g| serde_json::to_value(&g.limits).unwrap_or_default());
        let (actor, subject) = (actor.to_owned(), key_path(function_id, name));
        let (grantee_id_s, grantee_s) = (grantee_id.to_owned(), grantee.to_owned());
        let audit = move |version: u64, dek_version: u32| {
            let mut d = AuditDraft::new(actor.as_str(), action, subject.as_str())
                .detail("grantee_id", grantee_id_s.as_str())
                .detail("grantee", grantee_s.as_str())
                .detail("grants_version", version)
                .detail("dek_version", dek_version);
            if let Some(l) = &limits {
                d = d.detail("limits", l.clone());
            }
            d
        };
        self.write_record(&p, &namespace_of(function_id), &bytes, Existing::May, audit)
            .await?;
        Ok(grants)
    }

    async fn load_key(
        &self,
        function_id: &str,
        name: &KeyName,
    ) -> Result<(u64, Arc<StoredKey>), VaultError> {
        let p = key_path(function_id, name);
        if let Some(hit) = self.key_cache().get(&p) {
            return Ok(hit);
        }
        let (version, stored) = self
            .read_record(&p, &namespace_of(function_id))
            .await?
            .ok_or_else(|| VaultError::KeyNotFound(name.to_string()))?;
        let key = Arc::new(StoredKey::decode(stored.expose()).ok_or_else(corrupt)?);
        self.key_cache().put(&p, version, key.clone());
        Ok((version, key))
    }

    async fn store_key(
        &self,
        function_id: &str,
        name: &KeyName,
        key: StoredKey,
        existing: Existing,
        audit: AuditDraft,
    ) -> Result<KeyInfo, VaultError> {
        let p = key_path(function_id, name);
        let public = key
            .public_key()
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let (algorithm, exportable, public_hex) = (
            key.algorithm().as_str(),
            key.exportable,
            public.as_ref().map(hex::encode),
        );
        let audit = move |version: u64, dek_version: u32| {
            let mut d = audit
                .clone()
                .detail("version", version)
                .detail("dek_version", dek_version)
                .detail("algorithm", algorithm)
                .detail("exportable", exportable);
            if let Some(pk) = &public_hex {
                d = d.detail("public_key", pk.as_str());
            }
            d
        };
        let (version, _) = self
            .write_record(
                &p,
                &namespace_of(function_id),
                &key.encode(),
                existing,
                audit,
            )
            .await
            .map_err(|e| match e {
                VaultError::NotFound(_) => VaultError::KeyNotFound(name.to_string()),
                VaultError::KeyExists(_) => VaultError::KeyExists(name.to_string()),
                other => other,
            })?;
        let info = KeyInfo {
            name: name.to_string(),
            algorithm: key.algorithm(),
            version,
            public_key: public,
            exportable: key.exportable,
            imported: key.imported,
        };
        self.key_cache().put(&p, version, Arc::new(key));
        Ok(info)
    }
}

/// A stored key that does not decode: never the caller's fault, and never a key byte in the
/// message.
fn corrupt() -> VaultError {
    tracing::error!("a stored function key does not decode");
    VaultError::Keys(crate::KeyvaultError::Corrupt {
        what: "function key",
    })
}

fn info(name: &KeyName, version: u64, key: &StoredKey) -> Result<KeyInfo, VaultError> {
    Ok(KeyInfo {
        name: name.to_string(),
        algorithm: key.algorithm(),
        version,
        public_key: key
            .public_key()
            .map_err(|e| VaultError::Invalid(e.to_string()))?,
        exportable: key.exportable,
        imported: key.imported,
    })
}
