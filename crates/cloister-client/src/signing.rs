//! Signing helpers: what the CLI does transparently, for other Rust clients. A deploy's
//! manifest and every secret write are signed by the caller's identity and bound to keyvault's
//! instance key (docs/MANIFESTS.md); the gateway only relays them.

use std::sync::Arc;

use cloister_authority::manifest::{Manifest, ManifestLimits};
use cloister_authority::ops::{SecretOp, SecretWrite};
use cloister_authority::{Identity, SignOptions, sign};
use cloister_types::wire::{DeployRequest, FunctionInfo};
use cloister_types::{SecretRef, ServerLimits, code_hash};
use sha2::{Digest, Sha256};

use crate::ClientError;

/// Header carrying a signed request on calls without a body (DELETE).
pub const SIGNED_HEADER: &str = "cloister-signed";

/// The identity a client signs with.
#[derive(Debug, Clone)]
pub(crate) struct Signer {
    pub identity: Arc<Identity>,
    pub platform: Option<String>,
}

fn signing(e: cloister_authority::AuthorityError) -> ClientError {
    ClientError::Signing(e.to_string())
}

/// What a new version's manifest names of the function's latest one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// The function's id.
    pub function_id: String,
    /// Hex SHA-256 of its latest signed manifest.
    pub manifest_digest: String,
}

impl From<&FunctionInfo> for Previous {
    fn from(f: &FunctionInfo) -> Self {
        Self {
            function_id: f.function_id.clone(),
            manifest_digest: f.manifest_digest.clone(),
        }
    }
}

/// The manifest a deploy request describes: defaults filled in as the server fills them,
/// `existing` (the function's latest version, if any) naming its id and previous digest.
pub fn manifest_for(req: &DeployRequest, existing: Option<&Previous>) -> Manifest {
    let defaults = ServerLimits::default();
    let requested = req.limits.unwrap_or_default();
    Manifest {
        name: req.name.clone(),
        function_id: existing.map(|e| e.function_id.clone()),
        previous: existing.map(|e| e.manifest_digest.clone()),
        environment: req
            .environment
            .clone()
            .unwrap_or_else(|| cloister_types::Environment::default().to_string()),
        runtime: req.runtime.clone(),
        entrypoint: req
            .entrypoint
            .clone()
            .unwrap_or_else(|| cloister_types::Entrypoint::default().to_string()),
        code_hash: code_hash(&req.code),
        // Normalised as the server stores them (`name` and `default/name` are one secret).
        secrets: req
            .required_secrets
            .iter()
            .map(|s| {
                SecretRef::parse(s)
                    .map(|r| r.to_string())
                    .unwrap_or_else(|_| s.clone())
            })
            .collect(),
        limits: ManifestLimits {
            timeout_ms: requested.timeout_ms.unwrap_or(defaults.default_timeout_ms),
            memory_mb: requested.memory_mb.unwrap_or(defaults.default_memory_mb),
        },
        activate: true,
        confidential: req.sealed_code.is_some(),
        env: req.env.clone(),
        source_name: req.source_name.clone(),
        keys: req.required_keys.clone(),
        key_limits: req.key_limits.clone(),
        egress: req.egress.clone(),
    }
}

/// The base64 signed manifest for `req` (see [`manifest_for`]).
pub fn sign_deploy(
    identity: &Identity,
    platform: &str,
    req: &DeployRequest,
    existing: Option<&Previous>,
) -> Result<String, ClientError> {
    use base64::Engine as _;
    let m = manifest_for(req, existing);
    let bytes = sign(identity, &m, &SignOptions::for_platform(platform)).map_err(signing)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A signed secret write over (path, operation, SHA-256 of the sealed value).
pub fn sign_secret_write(
    identity: &Identity,
    platform: &str,
    path: &cloister_types::SecretPath,
    op: SecretOp,
    sealed: &[u8],
) -> Result<Vec<u8>, ClientError> {
    let body = SecretWrite {
        path: path.to_string(),
        op,
        sealed_digest: if sealed.is_empty() {
            String::new()
        } else {
            hex::encode(Sha256::digest(sealed))
        },
    };
    sign(identity, &body, &SignOptions::for_platform(platform)).map_err(signing)
}
