//! What evidence and sealed values are bound to, defined once for the server and its clients.

use sha2::{Digest, Sha512};

const BUNDLE_DOMAIN: &[u8] = b"cloister/attestation-bundle/v1";
const SECRET_SEAL_DOMAIN: &[u8] = b"cloister/secret-put/v1";
const AUDIT_VERDICT_DOMAIN: &[u8] = b"cloister/audit-verdict/v1";

fn field(h: &mut Sha512, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The `report_data` of keyvault's bundle evidence: SHA-512 over its HPKE key, its audit
/// (instance) key, the executor measurement allowlist and the digest of its identity registry,
/// so none can be swapped without breaking the evidence.
pub fn bundle_report_data(
    hpke_public_key: &[u8],
    audit_public_key: &[u8],
    executor_measurements: &[String],
    registry_digest: &[u8],
) -> [u8; 64] {
    let mut h = Sha512::new();
    field(&mut h, BUNDLE_DOMAIN);
    field(&mut h, hpke_public_key);
    field(&mut h, audit_public_key);
    h.update((executor_measurements.len() as u64).to_be_bytes());
    for m in executor_measurements {
        field(&mut h, m.as_bytes());
    }
    field(&mut h, registry_digest);
    h.finalize().into()
}

/// The digest of keyvault's identity registry a bundle binds: SHA-256 over each identity
/// (sorted by id) as `id`, `public key`, `role` (each length-prefixed) and one status byte:
/// 0 active, 1 revoked, 2 revoked as compromised.
pub fn registry_digest<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str, &'a str, bool, bool)>,
) -> [u8; 32] {
    use sha2::Sha256;
    let mut sorted: Vec<_> = entries.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    h.update(b"cloister/identity-registry/v1");
    for (id, key, role, revoked, compromised) in sorted {
        for part in [id.as_bytes(), key.as_bytes(), role.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update([match (revoked, compromised) {
            (_, true) => 2u8,
            (true, false) => 1,
            (false, false) => 0,
        }]);
    }
    h.finalize().into()
}

/// The `report_data` of an executor's evidence to the gateway: SHA-512 over the domain, the
/// gateway's nonce and both sides' ephemeral X25519 keys (each length-prefixed), so the
/// evidence is fresh and vouches for the link key derived from exactly these keys.
pub fn executor_link_report_data(
    nonce: &[u8],
    gateway_public: &[u8],
    executor_public: &[u8],
) -> [u8; 64] {
    let mut h = Sha512::new();
    field(&mut h, b"cloister/executor-link/v1");
    field(&mut h, nonce);
    field(&mut h, gateway_public);
    field(&mut h, executor_public);
    h.finalize().into()
}

/// The HKDF `info` of the gateway↔executor link key.
pub fn executor_link_info(gateway_public: &[u8], executor_public: &[u8]) -> Vec<u8> {
    let mut v = b"cloister/executor-link-key/v1".to_vec();
    v.extend_from_slice(gateway_public);
    v.extend_from_slice(executor_public);
    v
}

/// Domain of the link MAC an executor puts on each invocation response.
pub const INVOKE_RESPONSE_MAC_DOMAIN: &[u8] = b"cloister/invoke-response/v1";

/// The HPKE `info` a secret value is sealed with: binds the full secret path, so a value
/// sealed for one path cannot be stored at another.
pub fn secret_seal_info(path: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(SECRET_SEAL_DOMAIN.len() + 1 + path.len());
    v.extend_from_slice(SECRET_SEAL_DOMAIN);
    v.push(0);
    v.extend_from_slice(path.as_bytes());
    v
}

/// What keyvault signs for an audit verdict: the domain, the client's nonce and the report's
/// JSON text, each length-prefixed.
pub fn audit_verdict_message(nonce: &[u8], report_json: &str) -> Vec<u8> {
    let mut v =
        Vec::with_capacity(AUDIT_VERDICT_DOMAIN.len() + nonce.len() + report_json.len() + 24);
    for part in [AUDIT_VERDICT_DOMAIN, nonce, report_json.as_bytes()] {
        v.extend_from_slice(&(part.len() as u64).to_be_bytes());
        v.extend_from_slice(part);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundle_field_changes_the_report_data() {
        let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let base = bundle_report_data(b"hpke", b"audit", &m(&["aa", "bb"]), b"reg");
        assert_ne!(
            base,
            bundle_report_data(b"hpkf", b"audit", &m(&["aa", "bb"]), b"reg")
        );
        assert_ne!(
            base,
            bundle_report_data(b"hpke", b"audiu", &m(&["aa", "bb"]), b"reg")
        );
        assert_ne!(
            base,
            bundle_report_data(b"hpke", b"audit", &m(&["aa"]), b"reg")
        );
        assert_ne!(
            base,
            bundle_report_data(b"hpke", b"audit", &m(&["aabb"]), b"reg")
        );
        assert_ne!(
            base,
            bundle_report_data(b"hpkea", b"udit", &m(&["aa", "bb"]), b"reg")
        );
        assert_ne!(
            base,
            bundle_report_data(b"hpke", b"audit", &m(&["aa", "bb"]), b"reh")
        );
    }

    #[test]
    fn the_registry_digest_covers_every_field_and_ignores_order() {
        let a = ("01", "k1", "admin", false, false);
        let b = ("02", "k2", "developer", false, false);
        let d = registry_digest([a, b]);
        assert_eq!(d, registry_digest([b, a]));
        assert_ne!(d, registry_digest([a]));
        assert_ne!(d, registry_digest([a, ("02", "k2", "admin", false, false)]));
        let revoked = registry_digest([a, ("02", "k2", "developer", true, false)]);
        assert_ne!(d, revoked);
        assert_ne!(
            revoked,
            registry_digest([a, ("02", "k2", "developer", true, true)])
        );
        assert_ne!(
            d,
            registry_digest([a, ("02", "k3", "developer", false, false)])
        );
    }

    #[test]
    fn seal_info_binds_the_path() {
        assert_ne!(
            secret_seal_info("function-a/p/d/x"),
            secret_seal_info("function-b/p/d/x")
        );
    }
}
