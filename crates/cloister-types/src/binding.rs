//! What evidence and sealed values are bound to, defined once for the server and its clients.

use sha2::{Digest, Sha512};

const BUNDLE_DOMAIN: &[u8] = b"cloister/attestation-bundle/v2";
const SECRET_SEAL_DOMAIN: &[u8] = b"cloister/secret-put/v1";
const AUDIT_VERDICT_DOMAIN: &[u8] = b"cloister/audit-verdict/v1";

fn field(h: &mut Sha512, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// One fleet key as the bundle's report data covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetKeyBinding<'a> {
    /// Key id.
    pub key_id: &'a [u8],
    /// Rotation epoch.
    pub epoch: u64,
    /// X25519 public key.
    pub public_key: &'a [u8],
    /// HPKE suite name.
    pub suite: &'a str,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub not_after: u64,
}

/// The `report_data` of keyvault's bundle evidence: SHA-512 over its HPKE key, its audit
/// (instance) key, the executor measurement allowlist, the digest of its identity registry
/// and every fleet key with its epoch, suite and validity, so none can be swapped without
/// breaking the evidence.
pub fn bundle_report_data(
    hpke_public_key: &[u8],
    audit_public_key: &[u8],
    executor_measurements: &[String],
    registry_digest: &[u8],
    fleet_keys: &[FleetKeyBinding<'_>],
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
    h.update((fleet_keys.len() as u64).to_be_bytes());
    for k in fleet_keys {
        field(&mut h, k.key_id);
        h.update(k.epoch.to_be_bytes());
        field(&mut h, k.public_key);
        field(&mut h, k.suite.as_bytes());
        h.update(k.not_before.to_be_bytes());
        h.update(k.not_after.to_be_bytes());
    }
    h.finalize().into()
}

/// One identity as the registry digest covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryEntry<'a> {
    /// Identity id.
    pub id: &'a str,
    /// Hex public key.
    pub public_key: &'a str,
    /// Role name.
    pub role: &'a str,
    /// Revoked (or rotated away).
    pub revoked: bool,
    /// Revoked as compromised.
    pub compromised: bool,
    /// Grant expiry (Unix seconds).
    pub expires: Option<u64>,
    /// The key it rotated to.
    pub rotated_to: Option<&'a str>,
}

/// The digest of keyvault's registry a bundle binds: SHA-256 over each identity (sorted by
/// id) as `id`, `public key`, `role`, `rotated_to` (each length-prefixed), a status byte (0
/// active, 1 revoked, 2 revoked as compromised) and the expiry (8 bytes, 0 for none); then
/// the executor policy's version and the SHA-256 of its document, when there is one.
pub fn registry_digest(entries: &[RegistryEntry<'_>], policy: Option<(u64, &str)>) -> [u8; 32] {
    use sha2::Sha256;
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(b.id));
    let mut h = Sha256::new();
    h.update(b"cloister/registry/v2");
    for e in sorted {
        for part in [
            e.id.as_bytes(),
            e.public_key.as_bytes(),
            e.role.as_bytes(),
            e.rotated_to.unwrap_or("").as_bytes(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update([match (e.revoked, e.compromised) {
            (_, true) => 2u8,
            (true, false) => 1,
            (false, false) => 0,
        }]);
        h.update(e.expires.unwrap_or(0).to_be_bytes());
    }
    if let Some((version, doc)) = policy {
        h.update(b"executor-policy");
        h.update(version.to_be_bytes());
        h.update(Sha256::digest(doc.as_bytes()));
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

/// Domain of keyvault's signature over a function key's public facts.
pub const KEY_VIEW_DOMAIN: &[u8] = b"cloister/key-view/v2";

/// HPKE info of a key's secret sealed to keyvault for an import: the domain, the function id
/// and the key's name, each length-prefixed, so sealed bytes cannot be replayed into another
/// key.
pub fn key_import_info(function_id: &str, name: &str) -> Vec<u8> {
    framed(&[
        b"cloister/key-import/v1",
        function_id.as_bytes(),
        name.as_bytes(),
    ])
}

/// HPKE info of the message of an owner's key use sealed to keyvault (so the gateway
/// relays it without reading it): the domain, the function id and the key's name, each
/// length-prefixed.
pub fn key_use_info(function_id: &str, name: &str) -> Vec<u8> {
    framed(&[
        b"cloister/key-use-message/v1",
        function_id.as_bytes(),
        name.as_bytes(),
    ])
}

/// HPKE info of a key's secret keyvault seals to an export's recipient: the domain, the
/// function id, the key's name, its algorithm and version, each length-prefixed.
pub fn key_export_info(function_id: &str, name: &str, algorithm: &str, version: u64) -> Vec<u8> {
    framed(&[
        b"cloister/key-export/v1",
        function_id.as_bytes(),
        name.as_bytes(),
        algorithm.as_bytes(),
        &version.to_be_bytes(),
    ])
}

/// What keyvault signs (audit key) for an export: the SHA-256 of the owner's signed request
/// it answers, the export's HPKE info ([`key_export_info`]: function, key, algorithm,
/// version), the recipient's public key, the key's public key and the SHA-256 of the sealed
/// bytes, each length-prefixed. A recipient checks it before trusting what it opens: HPKE
/// alone does not say who sealed, nor which request it answers.
pub fn key_export_message(
    request_sha256: &[u8],
    export_info: &[u8],
    recipient: &[u8],
    public_key: &[u8],
    sealed_sha256: &[u8],
) -> Vec<u8> {
    framed(&[
        b"cloister/key-export-result/v1",
        request_sha256,
        export_info,
        recipient,
        public_key,
        sealed_sha256,
    ])
}

/// Each part prefixed with its length (u64, big-endian).
fn framed(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        v.extend_from_slice(&(part.len() as u64).to_be_bytes());
        v.extend_from_slice(part);
    }
    v
}

/// A function key's public facts, as keyvault signs them.
#[derive(Debug, Clone, Copy)]
pub struct KeyViewFacts<'a> {
    /// The function whose namespace holds the key: its id.
    pub function_id: &'a str,
    /// And its name.
    pub function: &'a str,
    /// The key's name.
    pub name: &'a str,
    /// Its algorithm.
    pub algorithm: &'a str,
    /// Its newest version.
    pub version: u64,
    /// The public key (empty for HMAC).
    pub public_key: &'a [u8],
    /// Whether it may ever leave keyvault.
    pub exportable: bool,
    /// Whether it was imported (its secret existed outside keyvault before).
    pub imported: bool,
    /// The functions (names) it is granted to, sorted.
    pub granted_to: &'a [String],
}

/// What keyvault signs (with its audit key, which clients bind to a verified bundle) for one
/// of a function's keys: every field of [`KeyViewFacts`], each length-prefixed (the grantees
/// as a count, then each). A gateway cannot hand an owner or a verifier a public key
/// keyvault did not make for that function, hide a grant, or pass an imported key off as one
/// that never left keyvault.
pub fn key_view_message(k: &KeyViewFacts<'_>) -> Vec<u8> {
    let count = (k.granted_to.len() as u64).to_be_bytes();
    let mut parts: Vec<&[u8]> = vec![
        KEY_VIEW_DOMAIN,
        k.function_id.as_bytes(),
        k.function.as_bytes(),
        k.name.as_bytes(),
        k.algorithm.as_bytes(),
    ];
    let version = k.version.to_be_bytes();
    let flags = [u8::from(k.exportable) | (u8::from(k.imported) << 1)];
    parts.extend_from_slice(&[&version, k.public_key, &flags, &count]);
    parts.extend(k.granted_to.iter().map(|g| g.as_bytes()));
    framed(&parts)
}

/// Domain of keyvault's statement about one version of a key ([`key_version_message`]):
/// distinct from [`key_view_message`]'s, so a statement about an older version can never be
/// taken for the key's current view.
pub const KEY_VERSION_DOMAIN: &[u8] = b"cloister/key-version/v1";

/// What keyvault signs (audit key) for one version of a function's key: the function (id
/// and name), the key's name and algorithm, the version, its public key and whether that
/// version was imported, each length-prefixed. Verifiers of old signatures get the public
/// key of the version that made them.
pub fn key_version_message(
    function_id: &str,
    function: &str,
    name: &str,
    algorithm: &str,
    version: u64,
    public_key: &[u8],
    imported: bool,
) -> Vec<u8> {
    framed(&[
        KEY_VERSION_DOMAIN,
        function_id.as_bytes(),
        function.as_bytes(),
        name.as_bytes(),
        algorithm.as_bytes(),
        &version.to_be_bytes(),
        public_key,
        &[u8::from(imported)],
    ])
}

/// What keyvault signs (audit key) for a key change it made for an owner: the SHA-256 of the
/// owner's signed request and the key's view after it ([`key_view_message`]). A gateway
/// cannot answer a rotation, grant or revocation with a view from before it.
pub fn key_write_message(request_sha256: &[u8], view_message: &[u8]) -> Vec<u8> {
    framed(&[
        b"cloister/key-write-result/v1",
        request_sha256,
        view_message,
    ])
}

/// Domain of keyvault's signature over the result of an owner's key use.
pub const KEY_USE_DOMAIN: &[u8] = b"cloister/key-use-result/v1";

/// What keyvault signs (with its audit key) for the result of an owner's key use: the
/// SHA-256 of the signed request it answers, the key's algorithm and the version used, the
/// signature made (empty for a check), the recovery id (empty if none) and the verdict of a
/// check (empty for a signature), each length-prefixed. A gateway can neither alter a
/// signature nor turn a failed check into a passed one, and the result answers exactly one
/// request (no replay of an old verdict).
pub fn key_use_message(
    request_sha256: &[u8],
    algorithm: &str,
    version: u64,
    signature: &[u8],
    recovery_id: Option<u8>,
    valid: Option<bool>,
) -> Vec<u8> {
    let version = version.to_be_bytes();
    let rid: &[u8] = match &recovery_id {
        Some(r) => std::slice::from_ref(r),
        None => &[],
    };
    let valid: &[u8] = match valid {
        Some(true) => &[1],
        Some(false) => &[0],
        None => &[],
    };
    let parts: [&[u8]; 7] = [
        KEY_USE_DOMAIN,
        request_sha256,
        algorithm.as_bytes(),
        &version,
        signature,
        rid,
        valid,
    ];
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
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
        let k = FleetKeyBinding {
            key_id: b"id",
            epoch: 7,
            public_key: b"pk",
            suite: "s",
            not_before: 10,
            not_after: 20,
        };
        let rd = |h: &[u8], a: &[u8], e: &[&str], r: &[u8], f: &[FleetKeyBinding<'_>]| {
            bundle_report_data(h, a, &m(e), r, f)
        };
        let base = rd(b"hpke", b"audit", &["aa", "bb"], b"reg", &[k]);
        let changed = [
            rd(b"hpkf", b"audit", &["aa", "bb"], b"reg", &[k]),
            rd(b"hpke", b"audiu", &["aa", "bb"], b"reg", &[k]),
            rd(b"hpke", b"audit", &["aa"], b"reg", &[k]),
            rd(b"hpke", b"audit", &["aabb"], b"reg", &[k]),
            rd(b"hpkea", b"udit", &["aa", "bb"], b"reg", &[k]),
            rd(b"hpke", b"audit", &["aa", "bb"], b"reh", &[k]),
            rd(b"hpke", b"audit", &["aa", "bb"], b"reg", &[]),
            rd(b"hpke", b"audit", &["aa", "bb"], b"reg", &[k, k]),
            rd(
                b"hpke",
                b"audit",
                &["aa", "bb"],
                b"reg",
                &[FleetKeyBinding { key_id: b"ie", ..k }],
            ),
            rd(
                b"hpke",
                b"audit",
                &["aa", "bb"],
                b"reg",
                &[FleetKeyBinding { epoch: 8, ..k }],
            ),
            rd(
                b"hpke",
                b"audit",
                &["aa", "bb"],
                b"reg",
                &[FleetKeyBinding {
                    public_key: b"pl",
                    ..k
                }],
            ),
            rd(
                b"hpke",
                b"audit",
                &["aa", "bb"],
                b"reg",
                &[FleetKeyBinding { suite: "t", ..k }],
            ),
            rd(
                b"hpke",
                b"audit",
                &["aa", "bb"],
                b"reg",
                &[FleetKeyBinding {
                    not_before: 11,
                    ..k
                }],
            ),
            rd(
                b"hpke",
                b"audit",
                &["aa", "bb"],
                b"reg",
                &[FleetKeyBinding { not_after: 21, ..k }],
            ),
        ];
        for (i, c) in changed.iter().enumerate() {
            assert_ne!(&base, c, "change {i} did not change the report data");
        }
    }

    #[test]
    fn the_registry_digest_covers_every_field_and_ignores_order() {
        let e = |id, role, revoked, compromised, expires, rotated_to| RegistryEntry {
            id,
            public_key: "k",
            role,
            revoked,
            compromised,
            expires,
            rotated_to,
        };
        let a = e("01", "admin", false, false, None, None);
        let b = e("02", "developer", false, false, None, None);
        let d = registry_digest(&[a, b], None);
        assert_eq!(d, registry_digest(&[b, a], None));
        assert_ne!(d, registry_digest(&[a], None));
        for changed in [
            e("02", "admin", false, false, None, None),
            e("02", "developer", true, false, None, None),
            e("02", "developer", true, true, None, None),
            e("02", "developer", false, false, Some(5), None),
            e("02", "developer", true, false, None, Some("03")),
            RegistryEntry {
                public_key: "k2",
                ..b
            },
        ] {
            assert_ne!(d, registry_digest(&[a, changed], None), "{changed:?}");
        }
        let p = registry_digest(&[a, b], Some((1, "allow_simulated: true")));
        assert_ne!(d, p);
        assert_ne!(
            p,
            registry_digest(&[a, b], Some((2, "allow_simulated: true")))
        );
        assert_ne!(
            p,
            registry_digest(&[a, b], Some((1, "allow_simulated: false")))
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
