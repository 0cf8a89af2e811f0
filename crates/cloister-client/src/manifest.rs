//! Checking a function version's owner-signed manifest before sealing to it: the signature,
//! its domain and platform, and that the signer is an identity in keyvault's registry (the
//! registry checked against the digest keyvault's evidence binds). The sealed request then
//! binds the manifest's digest, and the executor runs it only by that manifest.

use base64::Engine as _;
use cloister_authority::manifest::Manifest;
use cloister_types::wire::{RegistryView, SignedManifest};

use crate::sealed::Target;

/// A manifest whose signature and signer checked out.
#[derive(Debug, Clone)]
pub struct VerifiedManifest {
    /// What to seal for.
    pub target: Target,
    /// Identity id of the signer.
    pub signer: String,
    /// Its label in the registry (not covered by the registry digest: unauthenticated).
    pub signer_label: String,
    /// The manifest.
    pub manifest: Manifest,
}

/// Why a manifest is not trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not base64.
    #[error("the manifest is not base64")]
    Encoding,
    /// The signature, domain or platform does not check out.
    #[error("the manifest's signature does not check out: {0}")]
    Signature(#[from] cloister_authority::AuthorityError),
    /// The signer is not in keyvault's registry (or with another key).
    #[error("the manifest is signed by {0}, which is not an identity in keyvault's registry")]
    UnknownSigner(String),
    /// The signer cannot deploy (its role), or was revoked as compromised.
    #[error("the manifest's signer {0} cannot vouch for code ({1})")]
    SignerNotAllowed(String, &'static str),
    /// The manifest is another function's.
    #[error("the manifest is for function {found:?}, not {expected:?}")]
    WrongFunction {
        /// Name or id found.
        found: String,
        /// Name or id expected.
        expected: String,
    },
}

/// Verifies `signed` (as the gateway relayed it) as the manifest of function `name`, against
/// `registry` (already checked with [`crate::registry::check`]) and keyvault's instance key
/// `platform` (hex).
pub fn verify_manifest(
    signed: &SignedManifest,
    registry: &RegistryView,
    platform: &str,
    name: &str,
) -> Result<VerifiedManifest, ManifestError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&signed.manifest)
        .map_err(|_| ManifestError::Encoding)?;
    let v = cloister_authority::request::verify_accepted::<Manifest>(&bytes, platform)?;
    let signer = v.signer_id().to_string();
    let identity = registry
        .identities
        .iter()
        .find(|i| {
            i.id == signer
                && i.public_key
                    .eq_ignore_ascii_case(&hex::encode(v.signer().0))
        })
        .ok_or_else(|| ManifestError::UnknownSigner(signer.clone()))?;
    if identity.compromised {
        return Err(ManifestError::SignerNotAllowed(
            signer,
            "revoked as compromised",
        ));
    }
    let m = v.body().clone();
    // Machine identities (CI) may sign new versions of a function an owner added them to.
    let may_sign = match identity.role.as_str() {
        "admin" | "developer" => true,
        "machine" => m.function_id.is_some(),
        _ => false,
    };
    if !may_sign {
        return Err(ManifestError::SignerNotAllowed(
            signer,
            "not an identity that may sign this manifest",
        ));
    }
    if m.name != name {
        return Err(ManifestError::WrongFunction {
            found: m.name,
            expected: name.to_owned(),
        });
    }
    if let Some(id) = &m.function_id
        && id != &signed.function_id
    {
        return Err(ManifestError::WrongFunction {
            found: id.clone(),
            expected: signed.function_id.clone(),
        });
    }
    Ok(VerifiedManifest {
        target: Target {
            function_id: signed.function_id.clone(),
            version: signed.version,
            code_hash: m.code_hash.clone(),
            manifest_digest: hex::encode(v.digest()),
        },
        signer,
        signer_label: identity.label.clone(),
        manifest: m,
    })
}
