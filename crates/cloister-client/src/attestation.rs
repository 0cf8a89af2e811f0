//! Checking keyvault's attestation bundle before trusting it with anything: the evidence must
//! chain to the pinned platform root, come from the expected keyvault build, be fresh, and
//! bind (through its report data) the very keys and allowlist the bundle advertises.

use base64::Engine as _;
use cloister_attest::sim::{SimEvidence, SimVerifier};
use cloister_attest::{Collateral, Verifier};
use cloister_crypto::{HpkePublicKey, VerifyingKey};
use cloister_types::binding::bundle_report_data;
use serde::Deserialize;

/// `GET /v1/attestation` as sent by the gateway (unverified).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// TEE type (`sim`, ...).
    pub tee: String,
    /// Human label of the TEE.
    pub tee_label: String,
    /// keyvault's part.
    pub keyvault: KeyvaultPart,
    /// Executor measurements keyvault releases secrets to (hex).
    pub executor_measurements: Vec<String>,
    /// Fingerprint of the sim platform root, as claimed by the server.
    pub sim_root_fingerprint: Option<String>,
}

/// keyvault's evidence and keys inside a [`Bundle`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyvaultPart {
    /// Base64 evidence.
    pub evidence: String,
    /// Hex X25519 key for sealing secret values.
    pub hpke_public_key: String,
    /// HPKE suite name.
    pub hpke_suite: String,
    /// Hex Ed25519 key of audit checkpoints: keyvault's instance key.
    pub audit_public_key: String,
    /// Hex digest of keyvault's identity registry.
    #[serde(default)]
    pub registry_digest: String,
    /// Admin identity ids.
    #[serde(default)]
    pub admins: Vec<String>,
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
}

/// Why a bundle is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle is not in the documented shape.
    #[error("malformed attestation bundle: {0}")]
    Malformed(String),
    /// This client cannot check this TEE type.
    #[error("this client verifies only simulated-TEE bundles; the server runs `{0}`")]
    UnsupportedTee(String),
    /// The evidence is signed by a root other than the pinned one.
    #[error("keyvault's evidence chains to sim root {found}, not the pinned {pinned}")]
    WrongRoot {
        /// Fingerprint found.
        found: String,
        /// Fingerprint pinned.
        pinned: String,
    },
    /// The evidence failed verification.
    #[error("keyvault's evidence is not authentic: {0}")]
    Evidence(#[from] cloister_attest::AttestError),
    /// Evidence for another role.
    #[error("the evidence is for role `{0}`, not keyvault")]
    WrongRole(String),
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
    let ev = SimEvidence::parse(&evidence_bytes(bundle)?)?;
    Ok(fingerprint(&ev.platform_cert))
}

fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

fn evidence_bytes(bundle: &Bundle) -> Result<Vec<u8>, BundleError> {
    if bundle.tee != "sim" {
        return Err(BundleError::UnsupportedTee(bundle.tee.clone()));
    }
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
    let ev = SimEvidence::parse(&bytes)?;
    let found = fingerprint(&ev.platform_cert);
    if !found.eq_ignore_ascii_case(pinned_root.trim()) {
        return Err(BundleError::WrongRoot {
            found,
            pinned: pinned_root.trim().to_ascii_lowercase(),
        });
    }
    let verified =
        SimVerifier::pinning(&ev.platform_cert)?.verify(&bytes, &Collateral::default(), now)?;
    if ev.role != "keyvault" {
        return Err(BundleError::WrongRole(ev.role));
    }
    let claims = verified.claims();
    if claims.measurement.0.as_slice() != expected_measurement {
        return Err(BundleError::WrongMeasurement {
            found: hex::encode(&claims.measurement.0),
            expected: hex::encode(expected_measurement),
        });
    }
    let age = claims.timestamp.map(|t| now - t).unwrap_or(i64::MAX);
    if age > max_age_secs {
        return Err(BundleError::Stale(age, max_age_secs));
    }
    let hpke_bytes = hex::decode(&bundle.keyvault.hpke_public_key)
        .map_err(|_| BundleError::Malformed("hpkePublicKey is not hex".into()))?;
    let audit_bytes = hex::decode(&bundle.keyvault.audit_public_key)
        .map_err(|_| BundleError::Malformed("auditPublicKey is not hex".into()))?;
    let registry = hex::decode(&bundle.keyvault.registry_digest)
        .map_err(|_| BundleError::Malformed("registryDigest is not hex".into()))?;
    let expected_rd = bundle_report_data(
        &hpke_bytes,
        &audit_bytes,
        &bundle.executor_measurements,
        &registry,
    );
    let bound = claims
        .report_data
        .as_ref()
        .is_some_and(|rd| cloister_crypto::ct_eq(&rd.0, &expected_rd));
    if !bound {
        return Err(BundleError::Unbound);
    }
    Ok(TrustedKeyvault {
        tee_label: claims.tee.label().to_owned(),
        hpke: HpkePublicKey::from_slice(&hpke_bytes)
            .map_err(|e| BundleError::Malformed(e.to_string()))?,
        audit_key: VerifyingKey::from_slice(&audit_bytes)
            .map_err(|e| BundleError::Malformed(e.to_string()))?,
        measurement: hex::encode(&claims.measurement.0),
        executor_measurements: bundle.executor_measurements.clone(),
        root_fingerprint: found,
        age_secs: age,
        registry_digest: hex::encode(&registry),
        admins: bundle.keyvault.admins.clone(),
    })
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
