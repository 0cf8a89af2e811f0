//! Signed operations other than deploys.

use serde::{Deserialize, Serialize};

use crate::request::Body;

/// A write to one secret path (domain `cloister/secret-write/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretWrite {
    /// Full secret path.
    pub path: String,
    /// What is done.
    pub op: SecretOp,
    /// Hex SHA-256 of the sealed value (empty for a delete): the signature covers the value
    /// without revealing it.
    pub sealed_digest: String,
}

impl Body for SecretWrite {
    const DOMAIN: &'static str = "cloister/secret-write/v1";
}

/// Kinds of secret writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecretOp {
    /// New secret or new version.
    Put,
    /// New version of an existing secret.
    Rotate,
    /// Delete with every version.
    Delete,
}

/// A change to one of a function's keys in keyvault (domain `cloister/key-write/v1`): the
/// key is made (or given a new version) inside keyvault, so the request carries no key bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyWrite {
    /// The function whose namespace holds the key.
    pub function_id: String,
    /// That function's name: keyvault refuses the request unless it binds this name to
    /// `function_id` (so a gateway cannot point an owner's request at another function).
    pub function: String,
    /// The key's name.
    pub name: String,
    /// What is done.
    pub op: KeyOp,
}

impl Body for KeyWrite {
    const DOMAIN: &'static str = "cloister/key-write/v1";
}

/// Kinds of key changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyOp {
    /// Generate a new key of this algorithm (`ed25519`, `ecdsa-p256`, `ecdsa-secp256k1`,
    /// `hmac-sha256`); refused if the name is taken.
    Create {
        /// The algorithm's name.
        algorithm: String,
        /// Whether the key may ever leave keyvault (sealed to a recipient, by an owner- and
        /// admin-signed export). Fixed for the key's life; absent: false, and the key has no
        /// export path at all.
        #[serde(default, skip_serializing_if = "is_false")]
        exportable: bool,
    },
    /// Bring in a key made elsewhere: its 32 secret bytes travel sealed to keyvault's HPKE
    /// key (info `cloister_types::binding::key_import_info`) next to the request, which binds
    /// their SHA-256. Refused if the name is taken.
    Import {
        /// The algorithm's name.
        algorithm: String,
        /// As for `create`.
        #[serde(default, skip_serializing_if = "is_false")]
        exportable: bool,
        /// Hex SHA-256 of the sealed bytes.
        sealed_sha256: String,
    },
    /// Generate the key's next version (same algorithm); older versions still verify.
    Rotate,
    /// Let another function use the key (its manifest declares it as `FUNCTION/NAME`, with
    /// this function's name).
    Grant {
        /// The grantee's function id.
        to_function_id: String,
        /// The grantee's name (keyvault refuses the request unless it binds this name to
        /// `to_function_id`).
        to_function: String,
        /// The key owner's limits on the grantee's use, enforced on top of the grantee's
        /// own manifest limits (absent: none).
        #[serde(default, skip_serializing_if = "cloister_types::KeyLimits::is_empty")]
        limits: cloister_types::KeyLimits,
    },
    /// Withdraw a grant; the grantee's next use is refused.
    Revoke {
        /// The former grantee's function id.
        to_function_id: String,
        /// Its name, as for a grant.
        to_function: String,
    },
}

/// An export of an exportable key, sealed to a recipient (domain `cloister/key-export/v1`).
/// keyvault needs two signatures over the same body: one by an owner of the function and one
/// by an admin, two distinct identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyExport {
    /// The function whose namespace holds the key.
    pub function_id: String,
    /// That function's name (keyvault refuses the request unless it binds this name to
    /// `function_id`).
    pub function: String,
    /// The key's name.
    pub name: String,
    /// The version to export (absent: the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The recipient's X25519 HPKE public key, hex: only its holder can open the export.
    pub recipient: String,
}

impl Body for KeyExport {
    const DOMAIN: &'static str = "cloister/key-export/v1";
}

/// An owner's use of one of a function's keys through the API (domain
/// `cloister/key-use/v1`): keyvault signs (or checks a signature over) the message whose
/// SHA-256 the request binds. The message itself travels next to the signed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUse {
    /// The function whose namespace holds the key.
    pub function_id: String,
    /// That function's name (keyvault refuses the request unless it binds this name to
    /// `function_id`).
    pub function: String,
    /// The key's name.
    pub name: String,
    /// The key version to use (absent: the newest to sign; every version, newest first, to
    /// verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `sha256`, `keccak256` or `prehashed` (`cloister_types::SignHash`).
    pub hash: String,
    /// Hex SHA-256 of the message.
    pub message_sha256: String,
    /// What is done.
    pub op: KeyUseOp,
}

impl Body for KeyUse {
    const DOMAIN: &'static str = "cloister/key-use/v1";
}

/// Kinds of key uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyUseOp {
    /// Sign the message.
    Sign,
    /// Check `signature` (hex) over the message.
    Verify {
        /// The signature to check, hex.
        signature: String,
    },
}

/// Roles in keyvault's identity registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IdentityRole {
    /// Changes the registry; may act on every function.
    Admin,
    /// Creates functions and acts on those it owns.
    Developer,
    /// A pipeline (CI): acts only on functions an owner made it an owner of; creates no
    /// function, changes no owners, and may be granted with an expiry.
    Machine,
}

impl IdentityRole {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Developer => "developer",
            Self::Machine => "machine",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "developer" => Some(Self::Developer),
            "machine" => Some(Self::Machine),
            _ => None,
        }
    }
}

/// An admin adds (or re-roles) an identity (domain `cloister/identity-grant/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityGrant {
    /// Hex Ed25519 public key of the identity.
    pub public_key: String,
    /// Role granted.
    pub role: IdentityRole,
    /// Human label.
    pub label: String,
    /// Unix seconds after which the identity authorises nothing (machine identities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

impl Body for IdentityGrant {
    const DOMAIN: &'static str = "cloister/identity-grant/v1";
}

/// An owner activates or deactivates a version (domain `cloister/activate/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    /// Function id.
    pub function_id: String,
    /// Its name, as the signer knows it: keyvault refuses the request unless the function
    /// with that id has this name (a gateway cannot redirect it to another function).
    pub name: String,
    /// Version.
    pub version: u32,
    /// true to activate, false to deactivate.
    pub active: bool,
    /// With `active: false`: every version above `version` too, as keyvault knows them (a
    /// rollback cannot be told of fewer versions than exist). `version` may then be one past
    /// the latest (nothing to deactivate). Absent from the signed bytes when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub and_newer: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Body for Activation {
    const DOMAIN: &'static str = "cloister/activate/v1";
}

/// A change to keyvault's registry other than a grant (domain `cloister/registry-change/v1`).
/// Who may sign each is keyvault's decision (see each variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum RegistryChange {
    /// The signer replaces its own key: the new key takes its role, label and ownerships;
    /// the old one is retired (manifests it signed stay valid). Signed by the old key.
    Rotate {
        /// Hex Ed25519 public key of the new key.
        new_public_key: String,
        /// Hex signature by the new key over [`rotation_proof_message`]: it is held by the
        /// rotating party, not someone else's published key.
        proof: String,
    },
    /// Revokes an identity. Signed by an admin, or by the identity itself. Without
    /// `compromised`, what it signed before stays valid; with it, every version whose
    /// manifest it signed is refused secrets for good.
    Revoke {
        /// Id of the identity.
        identity_id: String,
        /// The key leaked: distrust what it signed, not only what it will sign.
        compromised: bool,
    },
    /// Adds or removes owners of a function. Signed by an owner (not a machine identity) or
    /// an admin; at least one owner remains.
    Owners {
        /// Function id.
        function_id: String,
        /// Its name, as the signer knows it (checked by keyvault, as for activations).
        name: String,
        /// Identity ids to add.
        add: Vec<String>,
        /// Identity ids to remove.
        remove: Vec<String>,
    },
    /// Replaces the attestation policy executors must satisfy to receive secrets (admin
    /// only). `policy` is the YAML policy format of `cloister attest verify --policy`; it
    /// must list `allowed_measurements`. `version` is the current version plus one.
    ExecutorPolicy {
        /// The new version.
        version: u64,
        /// The policy document (YAML).
        policy: String,
    },
}

/// What the new key signs to prove possession in a rotation: the domain, the old identity
/// and the platform, each length-prefixed.
pub fn rotation_proof_message(old: &crate::IdentityId, platform: &str) -> Vec<u8> {
    let mut m = Vec::new();
    for part in [
        b"cloister/rotate-proof/v1".as_slice(),
        old.as_str().as_bytes(),
        platform.to_ascii_lowercase().as_bytes(),
    ] {
        m.extend_from_slice(&(part.len() as u64).to_be_bytes());
        m.extend_from_slice(part);
    }
    m
}

impl Body for RegistryChange {
    const DOMAIN: &'static str = "cloister/registry-change/v1";
}

/// An admin accepts a restored database as keyvault's new baseline (domain
/// `cloister/restore/v1`): its audit chain, ending at the named head, starts anti-rollback
/// epoch `epoch` (the current one plus one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// The new epoch.
    pub epoch: u64,
    /// Last sequence number of the restored audit chain.
    pub audit_head_seq: u64,
    /// Its hash (hex).
    pub audit_head_hash: String,
}

impl Body for Restore {
    const DOMAIN: &'static str = "cloister/restore/v1";
}

/// An admin approves re-sealing keyvault's root from the keyvault build measuring `from` to
/// the one measuring `to` (domain `cloister/keyvault-reseal/v1`). Development platforms
/// apply it automatically after a rebuild, together with the recovery key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyvaultReseal {
    /// Measurement the root is sealed to now (hex).
    pub from: String,
    /// Measurement of the keyvault build it may be re-sealed to (hex).
    pub to: String,
}

impl Body for KeyvaultReseal {
    const DOMAIN: &'static str = "cloister/keyvault-reseal/v1";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_changes_round_trip_through_canonical_cbor() {
        for c in [
            RegistryChange::Rotate {
                new_public_key: "ab".repeat(32),
                proof: "cd".repeat(64),
            },
            RegistryChange::Revoke {
                identity_id: "cd".repeat(16),
                compromised: true,
            },
            RegistryChange::Owners {
                function_id: "f".into(),
                name: "n".into(),
                add: vec!["a".into()],
                remove: vec![],
            },
        ] {
            let bytes = crate::canonical::to_vec(&c).unwrap();
            let back: RegistryChange = crate::canonical::from_slice(&bytes).unwrap();
            assert_eq!(back, c);
        }
        let grant = IdentityGrant {
            public_key: "ab".repeat(32),
            role: IdentityRole::Developer,
            label: "x".into(),
            expires: None,
        };
        let bytes = crate::canonical::to_vec(&grant).unwrap();
        let text = format!("{bytes:?}");
        assert!(
            !String::from_utf8_lossy(&bytes).contains("expires"),
            "no expiry keeps the version-1 encoding of grants: {text}"
        );
    }
}
