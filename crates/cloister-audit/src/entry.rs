//! One audit entry and its chained hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

const DOMAIN: &[u8] = b"cloister/audit-entry/v1";

/// What happened (stable strings: they are part of the hashed record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A function version was deployed.
    FunctionDeploy,
    /// A function was deleted.
    FunctionDelete,
    /// A secret value was stored (new secret or new version).
    SecretPut,
    /// A secret got a new version through `:rotate`.
    SecretRotate,
    /// A secret and all its versions were deleted.
    SecretDelete,
    /// Secret values were released to an attested executor.
    SecretRelease,
    /// A namespace's data key was rotated.
    DekRotate,
    /// The master key was rotated.
    MekRotate,
    /// keyvault created its root key and first MEK.
    VaultInit,
    /// The root key was re-sealed to a new measurement with the recovery key.
    RootMigrate,
    /// Fleet (invocation) private keys were released to an attested executor.
    FleetRelease,
    /// A peer's attestation was accepted.
    AttestationSuccess,
    /// A peer's attestation was refused.
    AttestationFailure,
    /// A request carried a missing, unknown or revoked token, or lacked the role.
    AuthFailure,
    /// An identity was added to keyvault's registry or changed role.
    IdentityGrant,
    /// A function version was activated or deactivated.
    FunctionActivate,
    /// keyvault refused a signed request or a release.
    AuthorityRefusal,
    /// A function read its secrets (one entry per invocation, cache hits included).
    SecretRead,
    /// An executor's attested channel closed (clean or not, with its last read sequence).
    ExecutorDisconnect,
    /// An identity replaced its key.
    IdentityRotate,
    /// An identity was revoked.
    IdentityRevoke,
    /// A function's owners changed.
    FunctionOwners,
    /// An admin-signed restore of keyvault's database started a new anti-rollback epoch.
    KeyvaultRestore,
    /// The attestation policy executors must satisfy changed.
    PolicySet,
    /// An API token was created (reported by the gateway; never the token's value).
    TokenCreate,
    /// An API token was revoked (reported by the gateway).
    TokenRevoke,
    /// A function's current version was set (a rollback) or released (reported by the
    /// gateway; which versions may run with secrets is keyvault's `function.activate`).
    FunctionCurrent,
    /// keyvault left out entries an untrusted party caused beyond its budget; the entry
    /// counts them by action.
    AuditSuppressed,
    /// A function's key was created inside keyvault (never its private bytes).
    KeyCreate,
    /// A function's key got a new version.
    KeyRotate,
    /// keyvault signed with a function's key (key, version, digest of the message, function,
    /// execution).
    KeySign,
    /// keyvault checked a signature with a function's key for an owner (key, version tried,
    /// digest of the message, the verdict).
    KeyVerify,
    /// An owner granted another function the use of a key (key, grantee).
    KeyGrant,
    /// An owner withdrew a grant of a key (key, former grantee).
    KeyRevoke,
    /// keyvault sealed an exportable key to a recipient, for an owner and an admin (key,
    /// version, recipient, digest of the sealed bytes).
    KeyExport,
}

impl Action {
    /// The stable name stored and hashed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FunctionDeploy => "function.deploy",
            Self::FunctionDelete => "function.delete",
            Self::SecretPut => "secret.put",
            Self::SecretRotate => "secret.rotate",
            Self::SecretDelete => "secret.delete",
            Self::SecretRelease => "secret.release",
            Self::DekRotate => "key.rotate_dek",
            Self::MekRotate => "key.rotate_mek",
            Self::VaultInit => "keyvault.init",
            Self::RootMigrate => "key.migrate_root",
            Self::FleetRelease => "key.fleet_release",
            Self::AttestationSuccess => "attestation.success",
            Self::AttestationFailure => "attestation.failure",
            Self::AuthFailure => "auth.failure",
            Self::IdentityGrant => "identity.grant",
            Self::FunctionActivate => "function.activate",
            Self::AuthorityRefusal => "authority.refusal",
            Self::SecretRead => "secret.read",
            Self::ExecutorDisconnect => "executor.disconnect",
            Self::IdentityRotate => "identity.rotate",
            Self::IdentityRevoke => "identity.revoke",
            Self::FunctionOwners => "function.owners",
            Self::KeyvaultRestore => "keyvault.restore",
            Self::PolicySet => "policy.set",
            Self::TokenCreate => "token.create",
            Self::TokenRevoke => "token.revoke",
            Self::FunctionCurrent => "function.current",
            Self::AuditSuppressed => "audit.suppressed",
            Self::KeyCreate => "key.create",
            Self::KeyRotate => "key.rotate",
            Self::KeySign => "key.sign",
            Self::KeyVerify => "key.verify",
            Self::KeyGrant => "key.grant",
            Self::KeyRevoke => "key.revoke",
            Self::KeyExport => "key.export",
        }
    }

    /// The events the gateway witnesses and reports: keyvault records them (labelled as
    /// reported) and nothing else from the gateway, and they never carry keyvault's records
    /// of the authority rows it wrote.
    pub const GATEWAY_REPORTED: [Action; 5] = [
        Self::FunctionDelete,
        Self::AuthFailure,
        Self::TokenCreate,
        Self::TokenRevoke,
        Self::FunctionCurrent,
    ];

    /// The gateway-reported action named `name`, if it is one.
    pub fn gateway_reported(name: &str) -> Option<Action> {
        Self::GATEWAY_REPORTED
            .into_iter()
            .find(|a| a.as_str() == name)
    }
}

/// An entry before the store gives it a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    /// Who acted (`gateway`, `keyvault`, a token id, an executor measurement).
    pub actor: String,
    /// What happened.
    pub action: Action,
    /// What it happened to (function name, secret path, ...).
    pub subject: String,
    /// Extra facts as a JSON object (never secret values).
    pub details: serde_json::Value,
}

impl AuditDraft {
    /// A draft with empty details.
    pub fn new(actor: impl Into<String>, action: Action, subject: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            action,
            subject: subject.into(),
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// Adds one detail.
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        if let serde_json::Value::Object(map) = &mut self.details {
            map.insert(key.to_owned(), value.into());
        }
        self
    }

    /// Places the draft after `prev_hash` at `seq`, stamped `at`.
    pub fn chain(self, seq: u64, at: String, prev_hash: [u8; 32]) -> AuditEntry {
        let details = self.details.to_string();
        let mut entry = AuditEntry {
            seq,
            at,
            actor: self.actor,
            action: self.action.as_str().to_owned(),
            subject: self.subject,
            details,
            prev_hash: hex::encode(prev_hash),
            hash: String::new(),
            mac: String::new(),
        };
        entry.hash = hex::encode(entry.compute_hash());
        entry
    }
}

/// A stored entry, exactly as persisted and listed by `GET /v1/audit` (camelCase, as the
/// rest of the API; `prev_hash` is still read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// RFC 3339 time of the event.
    pub at: String,
    /// Who acted.
    pub actor: String,
    /// What happened ([`Action::as_str`]).
    pub action: String,
    /// What it happened to.
    pub subject: String,
    /// JSON object text with extra facts.
    pub details: String,
    /// Hex SHA-256 of the previous entry (zeros for the first).
    #[serde(alias = "prev_hash")]
    pub prev_hash: String,
    /// Hex SHA-256 over this entry's fields and `prev_hash`.
    pub hash: String,
    /// keyvault's HMAC-SHA256 (hex) over `hash`: only keyvault can write a valid entry, so
    /// entries recomputed by anyone else are caught even before the next checkpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

impl AuditEntry {
    /// The hash this entry should carry given its fields (length-prefixed, domain-separated).
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        field(&mut h, DOMAIN);
        h.update(self.seq.to_be_bytes());
        field(&mut h, self.at.as_bytes());
        field(&mut h, self.actor.as_bytes());
        field(&mut h, self.action.as_bytes());
        field(&mut h, self.subject.as_bytes());
        field(&mut h, self.details.as_bytes());
        field(&mut h, self.prev_hash.as_bytes());
        h.finalize().into()
    }

    /// The stored hash as bytes, if it is well-formed hex.
    pub fn hash_bytes(&self) -> Option<[u8; 32]> {
        let v = hex::decode(&self.hash).ok()?;
        v.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_camel_case_on_the_wire_and_the_old_name_still_reads() {
        let e = AuditEntry {
            seq: 1,
            at: "2026-12-07T00:00:00Z".into(),
            actor: "a".into(),
            action: "x".into(),
            subject: "s".into(),
            details: "{}".into(),
            prev_hash: "00".repeat(32),
            hash: "11".repeat(32),
            mac: String::new(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["prevHash"], "00".repeat(32));
        assert!(v.get("prev_hash").is_none());
        let mut old = v.clone();
        let ph = old.as_object_mut().unwrap().remove("prevHash").unwrap();
        old["prev_hash"] = ph;
        assert_eq!(serde_json::from_value::<AuditEntry>(old).unwrap(), e);
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let base = AuditDraft::new("kv", Action::SecretPut, "function-a/production/default/K")
            .detail("version", 1)
            .chain(7, "2026-01-01T00:00:00.000Z".into(), [1; 32]);
        assert_eq!(hex::encode(base.compute_hash()), base.hash);
        let edits: [fn(&mut AuditEntry); 7] = [
            |e| e.seq = 8,
            |e| e.at.push('x'),
            |e| e.actor.push('x'),
            |e| e.action = "secret.delete".into(),
            |e| e.subject.push('x'),
            |e| e.details = "{}".into(),
            |e| e.prev_hash = hex::encode([2u8; 32]),
        ];
        for edit in edits {
            let mut e = base.clone();
            edit(&mut e);
            assert_ne!(hex::encode(e.compute_hash()), base.hash);
        }
    }

    #[test]
    fn fields_cannot_shift_into_each_other() {
        let a = AuditDraft::new("ab", Action::SecretPut, "c").chain(1, "t".into(), GENESIS_HASH);
        let b = AuditDraft::new("a", Action::SecretPut, "bc").chain(1, "t".into(), GENESIS_HASH);
        assert_ne!(a.hash, b.hash);
    }
}
