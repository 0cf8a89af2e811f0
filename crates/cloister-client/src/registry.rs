//! Checking the registry the gateway relays against what keyvault's evidence binds: the
//! identities against the registry digest, the executor policy's allowlist against the bundle's
//! executor measurements. A gateway cannot add, hide or re-role an identity, or misstate which
//! executors receive secrets, in what the client shows.

use cloister_types::wire::{IdentityInfo, RegistryView};

use crate::attestation::TrustedKeyvault;

/// Why a relayed registry is not keyvault's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// The list hashes to another digest than the verified bundle binds.
    #[error(
        "the identity list relayed by the gateway is not the registry keyvault's evidence binds (digest {got}, evidence binds {bound})"
    )]
    DigestMismatch {
        /// Digest of the relayed list (hex).
        got: String,
        /// Digest bound by the evidence (hex).
        bound: String,
    },
    /// The relayed executor policy's allowlist is not the one the evidence binds.
    #[error(
        "the executor policy relayed by the gateway allows {relayed:?}, keyvault's evidence binds {bound:?}"
    )]
    PolicyMismatch {
        /// Measurements in the relayed policy.
        relayed: Vec<String>,
        /// Measurements bound by the evidence.
        bound: Vec<String>,
    },
}

/// Digest of relayed identities, as keyvault computes it.
pub fn digest(identities: &[IdentityInfo]) -> String {
    hex::encode(cloister_types::binding::registry_digest(
        identities.iter().map(|i| {
            (
                i.id.as_str(),
                i.public_key.as_str(),
                i.role.as_str(),
                i.revoked,
                i.compromised,
            )
        }),
    ))
}

/// Checks a relayed registry against a verified bundle.
pub fn check(view: &RegistryView, trusted: &TrustedKeyvault) -> Result<(), RegistryError> {
    let got = digest(&view.identities);
    if !cloister_crypto::ct_eq(got.as_bytes(), trusted.registry_digest.as_bytes()) {
        return Err(RegistryError::DigestMismatch {
            got,
            bound: trusted.registry_digest.clone(),
        });
    }
    let relayed = view
        .executor_policy
        .as_ref()
        .map(|p| p.measurements.clone())
        .unwrap_or_default();
    let mut bound = trusted.executor_measurements.clone();
    bound.sort();
    let mut sorted = relayed.clone();
    sorted.sort();
    if sorted != bound {
        return Err(RegistryError::PolicyMismatch { relayed, bound });
    }
    Ok(())
}

/// Admins of a checked registry that are not revoked.
pub fn live_admins(identities: &[IdentityInfo]) -> Vec<&IdentityInfo> {
    identities
        .iter()
        .filter(|i| i.role == "admin" && !i.revoked)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, role: &str, revoked: bool) -> IdentityInfo {
        IdentityInfo {
            id: id.into(),
            public_key: format!("{id}-key"),
            role: role.into(),
            label: "x".into(),
            revoked,
            compromised: false,
            rotated_to: None,
            expires: None,
        }
    }

    #[test]
    fn a_relayed_list_must_hash_to_the_bound_digest() {
        let list = vec![info("01", "admin", false), info("02", "developer", false)];
        let d = digest(&list);
        // What keyvault binds, computed the same way on its side.
        let bound = hex::encode(cloister_types::binding::registry_digest([
            ("01", "01-key", "admin", false, false),
            ("02", "02-key", "developer", false, false),
        ]));
        assert_eq!(d, bound);
        // A gateway that promotes an identity, hides one or un-revokes one is caught.
        let mut promoted = list.clone();
        promoted[1].role = "admin".into();
        assert_ne!(digest(&promoted), bound);
        let mut hidden = list.clone();
        hidden.pop();
        assert_ne!(digest(&hidden), bound);
        let mut compromised = list.clone();
        compromised[1].compromised = true;
        assert_ne!(digest(&compromised), bound);
        assert_eq!(live_admins(&list).len(), 1);
    }
}
