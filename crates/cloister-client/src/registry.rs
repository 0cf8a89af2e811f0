//! Checking the identity registry the gateway relays against the digest keyvault's evidence
//! binds: a gateway cannot add, hide or re-role an identity in what the client shows.

use cloister_types::wire::{IdentityInfo, IdentityList};

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
}

/// Digest of a relayed list, as keyvault computes it.
pub fn digest(list: &IdentityList) -> String {
    hex::encode(cloister_types::binding::registry_digest(
        list.identities.iter().map(|i| {
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

/// Checks `list` against the registry digest of a verified bundle.
pub fn check(list: &IdentityList, trusted: &TrustedKeyvault) -> Result<(), RegistryError> {
    let got = digest(list);
    if cloister_crypto::ct_eq(got.as_bytes(), trusted.registry_digest.as_bytes()) {
        Ok(())
    } else {
        Err(RegistryError::DigestMismatch {
            got,
            bound: trusted.registry_digest.clone(),
        })
    }
}

/// Admins of a checked list that are not revoked.
pub fn live_admins(list: &IdentityList) -> Vec<&IdentityInfo> {
    list.identities
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
        let list = IdentityList {
            identities: vec![info("01", "admin", false), info("02", "developer", false)],
        };
        let d = digest(&list);
        // What keyvault binds, computed the same way on its side.
        let bound = hex::encode(cloister_types::binding::registry_digest([
            ("01", "01-key", "admin", false, false),
            ("02", "02-key", "developer", false, false),
        ]));
        assert_eq!(d, bound);
        // A gateway that promotes an identity, hides one or un-revokes one is caught.
        let mut promoted = list.clone();
        promoted.identities[1].role = "admin".into();
        assert_ne!(digest(&promoted), bound);
        let mut hidden = list.clone();
        hidden.identities.pop();
        assert_ne!(digest(&hidden), bound);
        let mut compromised = list.clone();
        compromised.identities[1].compromised = true;
        assert_ne!(digest(&compromised), bound);
        assert_eq!(live_admins(&list).len(), 1);
    }
}
