//! What an executor may run and read, decided by keyvault: for the code it loaded, keyvault
//! returns the function version's owner-signed manifest (entrypoint, environment, limits,
//! declared secrets) and exactly the declared secret values.
//!
//! [`SecretSource`] is the plug-in point: [`crate::keyvault_client::KeyvaultSecrets`] asks
//! keyvault over the attested channel; [`StaticManifests`] serves manifests registered in
//! process (tests and benchmarks of the supervisor alone; it releases no secret).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use cloister_types::{ErrorCode, Limits};
use zeroize::Zeroizing;

/// Secret values (any bytes) by the name the function sees; zeroized when dropped.
pub type SecretValues = BTreeMap<String, Zeroizing<Vec<u8>>>;

/// The fields of a registered manifest the executor runs a function by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunManifest {
    /// Function id.
    pub function_id: String,
    /// Version.
    pub version: u32,
    /// Function name.
    pub name: String,
    /// Environment.
    pub environment: String,
    /// Runtime.
    pub runtime: String,
    /// Entrypoint.
    pub entrypoint: String,
    /// `sha256:<hex>` the manifest names.
    pub code_hash: String,
    /// Declared secrets.
    pub secrets: Vec<String>,
    /// Limits (clamped by the executor's maxima before use).
    pub limits: Limits,
    /// Digest of the signed manifest (hex).
    pub digest: String,
    /// Non-secret configuration (`context.env`).
    pub env: BTreeMap<String, String>,
    /// The file the code came from, named in stack traces.
    pub source_name: Option<String>,
    /// Keys in keyvault the function may use (`context.sign`), by name.
    pub keys: Vec<String>,
    /// Outbound `fetch` policy, checked (absent: no network).
    pub egress: Option<Arc<cloister_types::egress::CheckedEgress>>,
}

impl RunManifest {
    /// Whether the function sees secret `name` in `secrets` (egress-only ones it never does).
    pub fn readable_secret(&self, name: &str) -> bool {
        self.egress
            .as_ref()
            .is_none_or(|e| !e.secrets.contains_key(name))
    }
}

/// What keyvault granted for one (function, version, loaded code).
#[derive(Clone)]
pub struct Grant {
    /// The manifest to run by.
    pub manifest: Arc<RunManifest>,
    /// The declared secrets the code may read.
    pub secrets: Arc<SecretValues>,
    /// Egress-only values (keyvault's word): injected on the wire, never given to the code.
    pub egress_secrets: Arc<SecretValues>,
    /// The function's code key, when its code is confidential (opens the stored code).
    pub code_key: Option<Arc<cloister_crypto::SecretKey32>>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: never a value.
        f.debug_struct("Grant")
            .field("manifest", &self.manifest)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field(
                "egress_secrets",
                &self.egress_secrets.keys().collect::<Vec<_>>(),
            )
            .field("code_key", &self.code_key.is_some())
            .finish()
    }
}

/// What the executor asks for.
#[derive(Debug, Clone, Copy)]
pub struct GrantRequest<'a> {
    /// Function id named by the gateway.
    pub function_id: &'a str,
    /// Version named by the gateway.
    pub version: u32,
    /// `sha256:<hex>` computed over the code the executor loaded.
    pub loaded_code_hash: &'a str,
    /// Namespace change counter as the gateway last saw it: grants cached from an older epoch
    /// must not be served.
    pub epoch: u64,
    /// The invocation that asks (recorded when values are released).
    pub execution_id: &'a str,
}

/// Future returned by [`SecretSource::grant`].
pub type GrantFuture<'a> = Pin<Box<dyn Future<Output = Result<Grant, SecretError>> + Send + 'a>>;

/// A running function's request to keyvault for one of its keys.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// The function, version and loaded code the request comes from (keyvault authorises
    /// the run again, as for a release).
    pub function_id: String,
    /// Version.
    pub version: u32,
    /// `sha256:<hex>` of the code loaded.
    pub code_hash: String,
    /// The invocation (recorded with each signature).
    pub execution_id: String,
    /// The key's name in the manifest.
    pub key: String,
    /// What to sign (empty for a public key).
    pub message: Vec<u8>,
    /// `sha256`, `keccak256` or `prehashed`.
    pub hash: String,
    /// Only the public key is asked for.
    pub public_key_only: bool,
}

/// keyvault's answer to a [`KeyRequest`].
#[derive(Debug, Clone)]
pub struct KeyAnswer {
    /// The key's algorithm name.
    pub algorithm: String,
    /// The key version used.
    pub key_version: u64,
    /// The signature (empty for a public key request).
    pub signature: Vec<u8>,
    /// The public key (empty for HMAC).
    pub public_key: Vec<u8>,
    /// secp256k1: the recovery id.
    pub recovery_id: Option<u8>,
}

/// Future returned by [`SecretSource::key`].
pub type KeyFuture<'a> = Pin<Box<dyn Future<Output = Result<KeyAnswer, SecretError>> + Send + 'a>>;

/// Where an executor gets manifests and secret values.
pub trait SecretSource: Send + Sync {
    /// The manifest and secrets for `req`, or why not.
    fn grant<'a>(&'a self, req: GrantRequest<'a>) -> GrantFuture<'a>;

    /// A signature (or public key) from keyvault for a running function; sources without
    /// keys refuse.
    fn key<'a>(&'a self, _req: KeyRequest) -> KeyFuture<'a> {
        Box::pin(async {
            Err(SecretError::Refused {
                code: ErrorCode::CapabilityNotGranted,
                message: "this executor has no keyvault to sign with".into(),
            })
        })
    }
}

/// Why a grant was not given.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A declared secret does not exist.
    #[error("declared secret `{0}` does not exist")]
    Missing(String),
    /// keyvault refused (wrong code, inactive version, unknown function, ...).
    #[error("{message}")]
    Refused {
        /// Stable public code.
        code: ErrorCode,
        /// keyvault's explanation.
        message: String,
    },
    /// The secrets service could not be reached.
    #[error("secrets service unavailable: {0}")]
    Unavailable(String),
}

/// Manifests registered in process; releases no secret values (a manifest declaring
/// secrets is refused with `secret_missing`).
#[derive(Debug, Default)]
pub struct StaticManifests {
    by_key: Mutex<HashMap<(String, u32), Arc<RunManifest>>>,
}

impl StaticManifests {
    /// Registers `m`.
    pub fn insert(&self, m: RunManifest) {
        self.by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((m.function_id.clone(), m.version), Arc::new(m));
    }
}

impl SecretSource for StaticManifests {
    fn grant<'a>(&'a self, req: GrantRequest<'a>) -> GrantFuture<'a> {
        Box::pin(async move {
            let m = self
                .by_key
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(req.function_id.to_owned(), req.version))
                .cloned()
                .ok_or_else(|| SecretError::Refused {
                    code: ErrorCode::FunctionNotFound,
                    message: format!(
                        "no manifest for {} version {}",
                        req.function_id, req.version
                    ),
                })?;
            if m.code_hash != req.loaded_code_hash {
                return Err(SecretError::Refused {
                    code: ErrorCode::ManifestMismatch,
                    message: "the loaded code is not the manifest's".into(),
                });
            }
            if let Some(first) = m.secrets.first() {
                return Err(SecretError::Missing(first.clone()));
            }
            Ok(Grant {
                code_key: None,
                manifest: m,
                secrets: Arc::new(BTreeMap::new()),
                egress_secrets: Arc::default(),
            })
        })
    }
}

/// Replaces every occurrence of a secret value in `text` with `[REDACTED]`. Values shorter
/// than [`MIN_REDACTED_LEN`] are left alone (redacting them would mangle ordinary text).
pub fn redact(text: &str, values: &SecretValues) -> String {
    let mut out = text.to_owned();
    // A binary value (not UTF-8) cannot appear in text as itself.
    for v in values.values().filter_map(|v| std::str::from_utf8(v).ok()) {
        if v.len() >= MIN_REDACTED_LEN && out.contains(v) {
            out = out.replace(v, "[REDACTED]");
        }
    }
    out
}

/// Shortest secret value that [`redact`] removes from logs.
pub const MIN_REDACTED_LEN: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_of_every_value() {
        let mut v = SecretValues::new();
        v.insert("A".into(), Zeroizing::new(b"hunter22".to_vec()));
        v.insert("B".into(), Zeroizing::new(b"xyz".to_vec()));
        v.insert("C".into(), Zeroizing::new(vec![0xff, 0xfe, b'p', b'w']));
        assert_eq!(
            redact("pw=hunter22, again hunter22; xyz", &v),
            "pw=[REDACTED], again [REDACTED]; xyz"
        );
    }
}
