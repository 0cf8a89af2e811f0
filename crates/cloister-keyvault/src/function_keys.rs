//! Keys keyvault keeps for functions and signs with; the private halves never leave it
//! (docs/CAPABILITIES.md).
//!
//! A key lives in its function's namespace, stored like a secret: each version is a record
//! encrypted under the namespace's DEK with AAD = path + version, freshness-marked (a database
//! holding an older version than keyvault wrote is caught), written with its audit entry in
//! one transaction. Key paths (`function-<id>/@keys/<name>`) are not secret paths (those have
//! four segments and no `@`): the secret API cannot name them, secret listings leave them out
//! and no release ever reads them. Only the newest version signs.

use cloister_audit::{Action, AuditDraft};
use cloister_crypto::keys::{KeyAlgorithm, KeyMaterial, KeySignature, SignHash};
use cloister_types::{KeyLimits, KeyName, KeyOperation, namespace_of};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::authority::RegisteredManifest;
use crate::error::VaultError;
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

/// Key `name` if `manifest` declares it, with the manifest whose limits govern its use
/// ([`crate::authority::Authority::key_limits_source`]); `key_not_declared` otherwise.
async fn declared(
    vault: &Vault,
    manifest: &Arc<RegisteredManifest>,
    name: &str,
) -> Result<(KeyName, Arc<RegisteredManifest>), VaultError> {
    if !manifest.manifest.keys.iter().any(|k| k == name) {
        return Err(VaultError::KeyNotDeclared(name.to_owned()));
    }
    let parsed = KeyName::parse(name).map_err(|e| VaultError::Invalid(e.to_string()))?;
    let source = vault.authority().key_limits_source(manifest, name).await?;
    Ok((parsed, source))
}

/// The limits `source` sets on key `name`.
fn limits_of<'m>(source: &'m RegisteredManifest, name: &KeyName) -> &'m KeyLimits {
    source
        .manifest
        .key_limits
        .get(name.as_str())
        .unwrap_or(&NO_LIMITS)
}

/// Where key `name` of function `function_id` is stored.
pub fn key_path(function_id: &str, name: &KeyName) -> String {
    format!("{}/@keys/{name}", namespace_of(function_id))
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
    /// request was checked by the caller); refused if the name is taken.
    pub async fn create_key(
        &self,
        function_id: &str,
        name: &KeyName,
        algorithm: KeyAlgorithm,
        actor: &str,
    ) -> Result<KeyInfo, VaultError> {
        let key =
            KeyMaterial::generate(algorithm).map_err(|e| VaultError::Invalid(e.to_string()))?;
        self.store_key(
            function_id,
            name,
            &key,
            Existing::MustNot,
            Action::KeyCreate,
            actor,
        )
        .await
    }

    /// Gives key `name` a new version of the same algorithm.
    pub async fn rotate_key(
        &self,
        function_id: &str,
        name: &KeyName,
        actor: &str,
    ) -> Result<KeyInfo, VaultError> {
        let (_, old) = self.load_key(function_id, name).await?;
        let key = KeyMaterial::generate(old.algorithm())
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        self.store_key(
            function_id,
            name,
            &key,
            Existing::Must,
            Action::KeyRotate,
            actor,
        )
        .await
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

    /// The public half of key `name` for an invocation of the function `manifest` describes
    /// (its run authorised by the caller): the manifest must declare the key and its limits
    /// allow `publicKey`.
    pub async fn public_key_for_function(
        &self,
        manifest: &Arc<RegisteredManifest>,
        name: &str,
    ) -> Result<KeyInfo, VaultError> {
        let (name, source) = declared(self, manifest, name).await?;
        limits_of(&source, &name)
            .allows(KeyOperation::PublicKey)
            .map_err(|violation| VaultError::KeyLimit {
                key: name.to_string(),
                violation,
            })?;
        self.key_info(&manifest.function_id, &name).await
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
        let (name, source) = declared(self, manifest, name).await?;
        let limits = limits_of(&source, &name);
        limits
            .check_sign(message, hash)
            .map_err(|violation| VaultError::KeyLimit {
                key: name.to_string(),
                violation,
            })?;
        if let Some(rate) = limits.rate {
            self.key_rates()
                .take(&manifest.function_id, name.as_str(), rate)
                .map_err(|spent| VaultError::KeyRateLimited {
                    key: name.to_string(),
                    rate,
                    retry_after_ms: u64::try_from(spent.retry_after.as_millis())
                        .unwrap_or(u64::MAX),
                })?;
        }
        let (version, key) = self.load_key(&manifest.function_id, &name).await?;
        let signature = key
            .sign(message, hash)
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let audit = AuditDraft::new(
            executor,
            Action::KeySign,
            namespace_of(&manifest.function_id),
        )
        .detail("key", name.as_str())
        .detail("key_version", version)
        .detail("algorithm", key.algorithm().as_str())
        .detail("hash", hash.as_str())
        .detail("message_sha256", hex::encode(Sha256::digest(message)))
        .detail("function_version", manifest.version)
        .detail("execution_id", execution_id);
        self.audit(audit).await?;
        Ok(FunctionSignature {
            key: info(&name, version, &key)?,
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
    ) -> Result<Vec<(u64, KeyMaterial)>, VaultError> {
        let p = key_path(function_id, name);
        self.read_record_versions(&p, &namespace_of(function_id))
            .await?
            .into_iter()
            .map(|(v, stored)| {
                Ok((
                    v,
                    KeyMaterial::from_stored(stored.expose()).map_err(internal)?,
                ))
            })
            .collect()
    }

    async fn load_key(
        &self,
        function_id: &str,
        name: &KeyName,
    ) -> Result<(u64, KeyMaterial), VaultError> {
        let p = key_path(function_id, name);
        let (version, stored) = self
            .read_record(&p, &namespace_of(function_id))
            .await?
            .ok_or_else(|| VaultError::KeyNotFound(name.to_string()))?;
        let key = KeyMaterial::from_stored(stored.expose()).map_err(internal)?;
        Ok((version, key))
    }

    async fn store_key(
        &self,
        function_id: &str,
        name: &KeyName,
        key: &KeyMaterial,
        existing: Existing,
        action: Action,
        actor: &str,
    ) -> Result<KeyInfo, VaultError> {
        let p = key_path(function_id, name);
        let public = key
            .public_key()
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let audit = |version: u64, dek_version: u32| {
            let mut d = AuditDraft::new(actor, action, p.clone())
                .detail("version", version)
                .detail("dek_version", dek_version)
                .detail("algorithm", key.algorithm().as_str());
            if let Some(pk) = &public {
                d = d.detail("public_key", hex::encode(pk));
            }
            d
        };
        let (version, _) = self
            .write_record(
                &p,
                &namespace_of(function_id),
                &key.to_stored(),
                existing,
                audit,
            )
            .await
            .map_err(|e| match e {
                VaultError::NotFound(_) => VaultError::KeyNotFound(name.to_string()),
                VaultError::KeyExists(_) => VaultError::KeyExists(name.to_string()),
                other => other,
            })?;
        Ok(KeyInfo {
            name: name.to_string(),
            algorithm: key.algorithm(),
            version,
            public_key: public,
        })
    }
}

/// A failure of keyvault's own (its random number generator, a stored key that does not
/// decode): never the caller's fault, and never a key byte in the message.
fn internal(e: cloister_crypto::CryptoError) -> VaultError {
    tracing::error!(error = %e, "function key operation failed");
    VaultError::Keys(crate::KeyvaultError::Corrupt {
        what: "function key",
    })
}

fn info(name: &KeyName, version: u64, key: &KeyMaterial) -> Result<KeyInfo, VaultError> {
    Ok(KeyInfo {
        name: name.to_string(),
        algorithm: key.algorithm(),
        version,
        public_key: key
            .public_key()
            .map_err(|e| VaultError::Invalid(e.to_string()))?,
    })
}
