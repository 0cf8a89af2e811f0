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

/// Digest of a relayed registry, as keyvault computes it.
pub fn digest(view: &RegistryView) -> String {
    let entries: Vec<cloister_types::binding::RegistryEntry<'_>> = view
        .identities
        .iter()
        .map(|i| cloister_types::binding::RegistryEntry {
            id: i.id.as_str(),
            public_key: i.public_key.as_str(),
            role: i.role.as_str(),
            revoked: i.revoked,
            compromised: i.compromised,
            expires: i.expires,
            rotated_to: i.rotated_to.as_deref(),
        })
        .collect();
    hex::encode(cloister_types::binding::registry_digest(
        &entries,
        view.executor_policy
            .as_ref()
            .map(|p| (p.version, p.policy.as_str())),
    ))
}

/// Checks a relayed registry against a verified bundle.
pub fn check(view: &RegistryView, trusted: &TrustedKeyvault) -> Result<(), RegistryError> {
    let got = digest(view);
    if !cloister_crypto::ct_eq(got.as_bytes(), trusted.registry_digest.as_bytes()) {
        return Err(RegistryError::DigestMismatch {
            got,
            bound: trusted.registry_digest.clone(),
        });
    }
    // The document is bound by the digest; its allowlist must be the one shown and the one
    // the evidence binds.
    let relayed = view
        .executor_policy
        .as_ref()
        .map(|p| p.measurements.clone())
        .unwrap_or_default();
    let from_doc = view
        .executor_policy
        .as_ref()
        .and_then(|p| cloister_attest::Policy::from_yaml(&p.policy).ok())
        .and_then(|p| p.allowed_measurements_hex())
        .unwrap_or_default();
    let mut bound = trusted.executor_measurements.clone();
    bound.sort();
    let mut sorted = relayed.clone();
    sorted.sort();
    if sorted != bound || from_doc != bound {
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
    fn a_relayed_registry_must_hash_to_the_bound_digest() {
        let view = RegistryView {
            identities: vec![info("01", "admin", false), info("02", "developer", false)],
            executor_policy: None,
        };
        let d = digest(&view);
        // What keyvault binds, computed the same way on its side.
        let e = |id: &'static str, key: &'static str, role: &'static str| {
            cloister_types::binding::RegistryEntry {
                id,
                public_key: key,
                role,
                revoked: false,
                compromised: false,
                expires: None,
                rotated_to: None,
            }
        };
        let bound = hex::encode(cloister_types::binding::registry_digest(
            &[e("01", "01-key", "admin"), e("02", "02-key", "developer")],
            None,
        ));
        assert_eq!(d, bound);
        // A gateway that promotes, hides, un-revokes, re-dates or re-points an identity, or
        // shows another policy, is caught.
        type Change = Box<dyn Fn(&mut RegistryView)>;
        let variants: Vec<Change> = vec![
            Box::new(|v| v.identities[1].role = "admin".into()),
            Box::new(|v| {
                v.identities.pop();
            }),
            Box::new(|v| v.identities[1].compromised = true),
            Box::new(|v| v.identities[1].expires = Some(1)),
            Box::new(|v| v.identities[1].rotated_to = Some("03".into())),
            Box::new(|v| {
                v.executor_policy = Some(cloister_types::wire::ExecutorPolicyInfo {
                    version: 1,
                    policy: "allow_simulated: true".into(),
                    measurements: vec![],
                    set_by: "bootstrap".into(),
                })
            }),
        ];
        for change in variants {
            let mut v = view.clone();
            change(&mut v);
            assert_ne!(digest(&v), bound);
        }
        assert_eq!(live_admins(&view.identities).len(), 1);
    }
}
