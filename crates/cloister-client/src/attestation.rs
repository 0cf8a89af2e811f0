//! Checking keyvault's attestation bundle before trusting it with anything: the evidence must
//! chain to the pinned platform root, come from the expected keyvault build, be fresh, and
//! bind (through its report data) the very keys and allowlist the bundle advertises.

use base64::Engine as _;
use cloister_crypto::{HpkePublicKey, VerifyingKey};

use crate::evidence::{EvidenceError, verify_evidence};
use cloister_types::binding::{FleetKeyBinding, bundle_report_data};

/// `GET /v1/attestation` as sent by the gateway (unverified): the wire types shared with it.
pub use cloister_types::wire::{AttestationBundle as Bundle, FleetKey, KeyvaultPart};

/// A fleet (invocation) key whose binding to keyvault's evidence checked out.
#[derive(Debug, Clone)]
pub struct TrustedFleetKey {
    /// Key id (8 bytes: the start of the SHA-256 of the public key).
    pub key_id: [u8; 8],
    /// Rotation epoch.
    pub epoch: u64,
    /// The key invocations are sealed to.
    pub public: HpkePublicKey,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub not_after: u64,
}

/// A bundle whose evidence checked out: only these keys may be used.
#[derive(Debug, Clone)]
pub struct TrustedKeyvault {
    /// Human label of the TEE (`sim (no hardware protection)`).
    pub tee_label: String,
    /// Key secret values are sealed to.
    pub hpke: HpkePublicKey,
    /// Key that signs audit checkpoints.
    pub audit_key: VerifyingKey,
    /// keyvault's verified measurement (hex).
    pub measurement: String,
    /// Executor measurements keyvault enforces (hex), bound by the evidence.
    pub executor_measurements: Vec<String>,
    /// SHA-256 fingerprint (hex) of the platform root the evidence chains to.
    pub root_fingerprint: String,
    /// Evidence age at verification, seconds.
    pub age_secs: i64,
    /// Digest of keyvault's identity registry (hex), bound by the evidence.
    pub registry_digest: String,
    /// Admin identity ids, as listed next to that digest.
    pub admins: Vec<String>,
    /// Fleet keys bound by the evidence and valid at verification time, newest first.
    pub fleet_keys: Vec<TrustedFleetKey>,
}

/// Why a bundle is not trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bundle is not in the documented shape.
    #[error("malformed attestation bundle: {0}")]
    Malformed(String),
    /// keyvault's evidence is not accepted (kind, root, signature, validity).
    #[error("keyvault's evidence: {0}")]
    Evidence(#[from] EvidenceError),
    /// Evidence for another role.
    #[error("the evidence is for role `{0}`, not keyvault")]
    WrongRole(String),
    /// Hardware evidence names no role: the keyvault build must not also be an executor build.
    #[error(
        "keyvault's measurement {0} is also on its executor allowlist: hardware evidence does \
         not say which role a build plays"
    )]
    AmbiguousRole(String),
    /// keyvault runs a build other than the expected one.
    #[error("keyvault runs measurement {found}, expected {expected}")]
    WrongMeasurement {
        /// Measurement found.
        found: String,
        /// Measurement expected.
        expected: String,
    },
    /// The evidence does not bind the advertised keys.
    #[error("the bundle's keys or allowlist are not the ones keyvault's evidence binds")]
    Unbound,
    /// The evidence is too old.
    #[error("keyvault's evidence is {0} s old (maximum {1} s)")]
    Stale(i64, i64),
}

/// Fingerprint (hex SHA-256 of the DER) of the root that signed the bundle's evidence, without
/// verifying anything: what trust-on-first-use pins.
pub fn presented_root(bundle: &Bundle) -> Result<String, BundleError> {
    Ok(crate::evidence::presented_root(
        &bundle.tee,
        &evidence_bytes(bundle)?,
    )?)
}

/// When the bundle's evidence was produced (Unix seconds), unverified: the time an offline
/// check verifies it at.
pub fn bundle_time(bundle: &Bundle) -> Result<i64, BundleError> {
    Ok(crate::evidence::produced_at(
        &bundle.tee,
        &evidence_bytes(bundle)?,
    )?)
}

fn evidence_bytes(bundle: &Bundle) -> Result<Vec<u8>, BundleError> {
    base64::engine::general_purpose::STANDARD
        .decode(&bundle.keyvault.evidence)
        .map_err(|e| BundleError::Malformed(format!("evidence is not base64: {e}")))
}

/// Verifies `bundle` against the pinned root fingerprint, the expected keyvault measurement,
/// a maximum evidence age and `now` (Unix seconds).
pub fn verify_bundle(
    bundle: &Bundle,
    pinned_root: &str,
    expected_measurement: &[u8; 48],
    max_age_secs: i64,
    now: i64,
) -> Result<TrustedKeyvault, BundleError> {
    let bytes = evidence_bytes(bundle)?;
    let ev = verify_evidence(&bundle.tee, &bytes, &[pinned_root.to_owned()], now)?;
    match &ev.role {
        Some(role) if role != "keyvault" => return Err(BundleError::WrongRole(role.clone())),
        Some(_) => {}
        None => {
            if bundle
                .executor_measurements
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&ev.measurement))
            {
                return Err(BundleError::AmbiguousRole(ev.measurement));
            }
        }
    }
    if !ev
        .measurement
        .eq_ignore_ascii_case(&hex::encode(expected_measurement))
    {
        return Err(BundleError::WrongMeasurement {
            found: ev.measurement,
            expected: hex::encode(expected_measurement),
        });
    }
    let age = ev.produced_at.map(|t| now - t).unwrap_or(i64::MAX);
    if age > max_age_secs {
        return Err(BundleError::Stale(age, max_age_secs));
    }
    let hpke_bytes = hex::decode(&bundle.keyvault.hpke_public_key)
        .map_err(|_| BundleError::Malformed("hpkePublicKey is not hex".into()))?;
    let audit_bytes = hex::decode(&bundle.keyvault.audit_public_key)
        .map_err(|_| BundleError::Malformed("auditPublicKey is not hex".into()))?;
    let registry = hex::decode(&bundle.keyvault.registry_digest)
        .map_err(|_| BundleError::Malformed("registryDigest is not hex".into()))?;
    let fleet = fleet_keys(&bundle.keyvault.fleet_keys)?;
    let bindings: Vec<FleetKeyBinding<'_>> = fleet
        .iter()
        .map(|(k, id, pk)| FleetKeyBinding {
            key_id: id,
            epoch: k.epoch,
            public_key: pk,
            suite: &k.suite,
            not_before: k.not_before,
            not_after: k.not_after,
        })
        .collect();
    let expected_rd = bundle_report_data(
        &hpke_bytes,
        &audit_bytes,
        &bundle.executor_measurements,
        &registry,
        &bindings,
    );
    let bound = ev
        .report_data
        .as_ref()
        .is_some_and(|rd| cloister_crypto::ct_eq(rd, &expected_rd));
    if !bound {
        return Err(BundleError::Unbound);
    }
    Ok(TrustedKeyvault {
        tee_label: ev.tee_label,
        hpke: HpkePublicKey::from_slice(&hpke_bytes)
            .map_err(|e| BundleError::Malformed(e.to_string()))?,
        audit_key: VerifyingKey::from_slice(&audit_bytes)
            .map_err(|e| BundleError::Malformed(e.to_string()))?,
        measurement: ev.measurement,
        executor_measurements: bundle.executor_measurements.clone(),
        root_fingerprint: ev.root_fingerprint,
        age_secs: age,
        registry_digest: hex::encode(&registry),
        admins: bundle.keyvault.admins.clone(),
        fleet_keys: trusted_fleet(&fleet, now)?,
    })
}

/// A fleet key from the bundle with its id and public key decoded.
type DecodedFleetKey<'a> = (&'a FleetKey, Vec<u8>, Vec<u8>);

/// Decodes the fleet keys (hex) and checks each id is its key's.
fn fleet_keys(keys: &[FleetKey]) -> Result<Vec<DecodedFleetKey<'_>>, BundleError> {
    keys.iter()
        .map(|k| {
            let id = hex::decode(&k.key_id)
                .map_err(|_| BundleError::Malformed("a fleet keyId is not hex".into()))?;
            let pk = hex::decode(&k.public_key)
                .map_err(|_| BundleError::Malformed("a fleet publicKey is not hex".into()))?;
            use sha2::Digest as _;
            if id.len() != 8 || id[..] != sha2::Sha256::digest(&pk)[..8] {
                return Err(BundleError::Malformed(format!(
                    "fleet key id {} is not its key's",
                    k.key_id
                )));
            }
            Ok((k, id, pk))
        })
        .collect()
}

/// The bound fleet keys valid at `now`, in the bundle's order.
fn trusted_fleet(
    keys: &[DecodedFleetKey<'_>],
    now: i64,
) -> Result<Vec<TrustedFleetKey>, BundleError> {
    let now = u64::try_from(now).unwrap_or(0);
    keys.iter()
        .filter(|(k, _, _)| k.not_before <= now && now < k.not_after)
        .map(|(k, id, pk)| {
            let mut key_id = [0u8; 8];
            key_id.copy_from_slice(id);
            Ok(TrustedFleetKey {
                key_id,
                epoch: k.epoch,
                public: HpkePublicKey::from_slice(pk)
                    .map_err(|e| BundleError::Malformed(e.to_string()))?,
                not_before: k.not_before,
                not_after: k.not_after,
            })
        })
        .collect()
}

/// Seals a secret value for `path` to keyvault's verified key (the HPKE info binds the path).
pub fn seal_secret(
    keyvault: &TrustedKeyvault,
    path: &cloister_types::SecretPath,
    value: &[u8],
) -> Result<Vec<u8>, cloister_crypto::CryptoError> {
    let info = cloister_types::binding::secret_seal_info(&path.to_string());
    keyvault.hpke.seal(&info, b"", value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_types::wire::KeyvaultPart;

    fn key(epoch: u64, not_before: u64, not_after: u64) -> FleetKey {
        let pk = cloister_crypto::HpkeKeyPair::derive(&[epoch as u8; 32])
            .unwrap()
            .public();
        use sha2::Digest as _;
        FleetKey {
            key_id: hex::encode(&sha2::Sha256::digest(pk.0)[..8]),
            epoch,
            public_key: hex::encode(pk.0),
            suite: cloister_crypto::hpke_seal::SUITE.to_owned(),
            not_before,
            not_after,
        }
    }

    /// A bundle around a real Nitro document (crates/cloister-attest/testdata/nitro): its
    /// chain verifies, but AWS's document binds none of this bundle's keys.
    #[test]
    fn a_nitro_bundle_is_checked_through_to_its_binding() {
        const PCR0: &str = "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b";
        const ROOT: &str = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";
        let doc = include_bytes!(
            "../../cloister-attest/testdata/nitro/nitro_evervault_2022-10-13_prod.cbor"
        );
        let at = 1_665_651_600;
        let bundle = |executors: Vec<String>| Bundle {
            tee: "nitro".into(),
            tee_label: "nitro".into(),
            keyvault: KeyvaultPart {
                evidence: base64::engine::general_purpose::STANDARD.encode(doc),
                hpke_public_key: hex::encode([1u8; 32]),
                hpke_suite: String::new(),
                audit_public_key: hex::encode([2u8; 32]),
                registry_digest: hex::encode([3u8; 32]),
                admins: vec![],
                fleet_keys: vec![],
            },
            executor_measurements: executors,
            sim_root_fingerprint: None,
        };
        let mut pcr0 = [0u8; 48];
        hex::decode_to_slice(PCR0, &mut pcr0).unwrap();
        let b = bundle(vec!["aa".repeat(48)]);
        assert_eq!(presented_root(&b).unwrap(), ROOT);
        assert_eq!(bundle_time(&b).unwrap(), 1_665_651_482);
        assert!(matches!(
            verify_bundle(&b, ROOT, &pcr0, 300, at),
            Err(BundleError::Unbound)
        ));
        assert!(matches!(
            verify_bundle(&b, ROOT, &[9; 48], 300, at),
            Err(BundleError::WrongMeasurement { .. })
        ));
        // Hardware evidence names no role: keyvault's build may not be an executor build.
        assert!(matches!(
            verify_bundle(&bundle(vec![PCR0.into()]), ROOT, &pcr0, 300, at),
            Err(BundleError::AmbiguousRole(_))
        ));
        assert!(matches!(
            verify_bundle(&b, &"ab".repeat(32), &pcr0, 300, at),
            Err(BundleError::Evidence(EvidenceError::RootNotTrusted { .. }))
        ));
        assert!(matches!(
            verify_bundle(&b, ROOT, &pcr0, 300, at + 200),
            Err(BundleError::Stale(..))
        ));
    }

    #[test]
    fn only_fleet_keys_valid_now_are_offered_and_ids_must_match_their_keys() {
        let keys = [key(2, 200, 310), key(1, 100, 210)];
        let decoded = fleet_keys(&keys).unwrap();
        let epochs = |now| {
            trusted_fleet(&decoded, now)
                .unwrap()
                .iter()
                .map(|k| k.epoch)
                .collect::<Vec<_>>()
        };
        assert_eq!(epochs(150), vec![1]);
        assert_eq!(
            epochs(205),
            vec![2, 1],
            "the overlap offers both, newest first"
        );
        assert_eq!(epochs(210), vec![2], "not_after is exclusive");
        assert!(epochs(310).is_empty(), "an expired key is never offered");
        let mut wrong = keys[0].clone();
        wrong.key_id = keys[1].key_id.clone();
        assert!(matches!(
            fleet_keys(std::slice::from_ref(&wrong)),
            Err(BundleError::Malformed(_))
        ));
    }
}
