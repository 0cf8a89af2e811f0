//! Checking invocation receipts (see `cloister_types::receipt`), online after each call or
//! offline years later: the signer's evidence must chain to the pinned root at the
//! receipt's time, come from an executor build keyvault allowed, and bind the key that
//! signed; then the receipt must name this call.

use base64::Engine as _;
use cloister_attest::sim::{SimEvidence, SimVerifier};
use cloister_attest::{Collateral, Verifier};
use cloister_crypto::VerifyingKey;
use cloister_types::receipt::{Receipt, ReceiptBody, key_report_data};

use crate::attestation::TrustedKeyvault;

/// What `cloister fn invoke --receipt FILE` saves: the receipt, the keyvault bundle it is
/// checked against, and the server it came from (whose pinned root checks the bundle).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptFile {
    /// The server URL.
    pub url: String,
    /// The receipt.
    pub receipt: Receipt,
    /// keyvault's attestation bundle as fetched for the call.
    pub bundle: crate::attestation::Bundle,
}

/// What a receipt is checked against.
#[derive(Debug, Clone)]
pub struct ReceiptTrust {
    /// SHA-256 fingerprint (hex) of the pinned platform root.
    pub root_fingerprint: String,
    /// Executor measurements (hex) keyvault allowed, from a verified bundle.
    pub executor_measurements: Vec<String>,
    /// Signers already verified under these settings (shared by clones).
    pub cache: SignerCache,
}

impl ReceiptTrust {
    /// Settings for `root_fingerprint` and the executor builds keyvault allowed.
    pub fn new(root_fingerprint: String, executor_measurements: Vec<String>) -> Self {
        Self {
            root_fingerprint,
            executor_measurements,
            cache: SignerCache::default(),
        }
    }
}

/// Executors' receipt keys whose evidence verified, so the receipts an executor signs after
/// the first cost one Ed25519 verification. An entry holds a span of receipt times its
/// evidence is valid for: from the earliest time it verified at to its chain's first expiry
/// (a chain is valid over one interval of time); outside that span it is verified again.
#[derive(Debug, Clone, Default)]
pub struct SignerCache(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], Signer>>>,
);

/// One verified signer.
#[derive(Debug, Clone)]
struct Signer {
    public_key: VerifyingKey,
    measurement: String,
    tee_label: String,
    verified_from: i64,
    verified_until: i64,
}

/// Most signers kept (one per executor process met).
const MAX_SIGNERS: usize = 256;

/// A receipt whose signature and signer checked out.
#[derive(Debug, Clone)]
pub struct VerifiedReceipt {
    /// What it states.
    pub body: ReceiptBody,
    /// Measurement (hex) of the executor that signed.
    pub executor_measurement: String,
    /// Human label of its TEE.
    pub tee_label: String,
}

/// Why a receipt is not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Not in the documented shape.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// This client cannot check this TEE's evidence.
    #[error("this client verifies only simulated-TEE receipts; the signer runs `{0}`")]
    UnsupportedTee(String),
    /// The signer's evidence chains to another root.
    #[error("the signer's evidence chains to root {found}, not the pinned {pinned}")]
    WrongRoot {
        /// Fingerprint found.
        found: String,
        /// Fingerprint pinned.
        pinned: String,
    },
    /// The evidence does not verify at the receipt's time.
    #[error("the signer's evidence is not authentic at the receipt's time: {0}")]
    Evidence(#[from] cloister_attest::AttestError),
    /// Evidence of another role.
    #[error("the signer's evidence is for role `{0}`, not an executor")]
    WrongRole(String),
    /// The executor build is not one keyvault allowed.
    #[error("the signer runs executor measurement {0}, which keyvault's bundle does not allow")]
    MeasurementNotAllowed(String),
    /// The evidence does not bind the signing key.
    #[error("the signer's evidence does not certify the key that signed")]
    KeyUnbound,
    /// The signature does not verify.
    #[error("the receipt's signature does not verify (a byte was changed)")]
    BadSignature,
    /// The receipt is valid but about another call.
    #[error("the receipt is not this call's: its {field} differs")]
    NotThisCall {
        /// Which field.
        field: &'static str,
    },
    /// A receipt was asked for and none came back.
    #[error("a receipt was asked for and the answer carries none")]
    Missing,
    /// The saved bundle is not trusted.
    #[error("the saved bundle: {0}")]
    Bundle(#[from] crate::trust::TrustError),
    /// The receipt was not signed while the saved bundle was current.
    #[error(
        "the receipt is dated {receipt}, outside the time its bundle was current ({bundle} to \
         {bundle} + {max_age} s): the bundle does not say which executor builds keyvault allowed then"
    )]
    BundleNotCurrent {
        /// Bundle evidence time.
        bundle: i64,
        /// Receipt time.
        receipt: i64,
        /// Maximum bundle age.
        max_age: i64,
    },
    /// The receipt names a fleet key the bundle does not publish.
    #[error("the receipt names fleet key {0}, which the saved bundle does not publish")]
    FleetKeyNotInBundle(String),
}

/// Tolerated clock difference between keyvault and the executor, seconds.
const CLOCK_SKEW_SECS: i64 = 60;

impl ReceiptFile {
    /// Checks a saved receipt offline: the bundle against `settings` as of when it was
    /// produced, the receipt signed while that bundle was current (so its executor allowlist
    /// is the one in force), then the receipt against the bundle's allowlist.
    pub fn verify(
        &self,
        settings: &crate::trust::TrustSettings,
    ) -> Result<(TrustedKeyvault, VerifiedReceipt), ReceiptError> {
        let at = crate::attestation::bundle_time(&self.bundle)
            .map_err(|e| ReceiptError::Bundle(e.into()))?;
        let kv = settings.verify(&self.bundle, at)?;
        let time = i64::try_from(self.receipt.body.time).unwrap_or(i64::MAX);
        let max_age = settings.max_bundle_age_secs;
        if time < at.saturating_sub(CLOCK_SKEW_SECS)
            || time > at.saturating_add(max_age).saturating_add(CLOCK_SKEW_SECS)
        {
            return Err(ReceiptError::BundleNotCurrent {
                bundle: at,
                receipt: time,
                max_age,
            });
        }
        let v = verify_receipt(
            &self.receipt,
            &ReceiptTrust::new(
                kv.root_fingerprint.clone(),
                kv.executor_measurements.clone(),
            ),
        )?;
        let key = &v.body.fleet_key_id;
        if !key.is_empty()
            && !self
                .bundle
                .keyvault
                .fleet_keys
                .iter()
                .any(|k| &k.key_id == key)
        {
            return Err(ReceiptError::FleetKeyNotInBundle(key.clone()));
        }
        Ok((kv, v))
    }
}

fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

/// Verifies `r`'s signer and signature against `trust`, at the receipt's own time.
pub fn verify_receipt(r: &Receipt, trust: &ReceiptTrust) -> Result<VerifiedReceipt, ReceiptError> {
    use sha2::Digest;
    let at = i64::try_from(r.body.time)
        .map_err(|_| ReceiptError::Malformed("time is out of range".into()))?;
    let mut h = sha2::Sha256::new();
    for part in [
        r.signer.tee.as_bytes(),
        r.signer.public_key.as_bytes(),
        r.signer.evidence.as_bytes(),
        trust.root_fingerprint.trim().as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let key: [u8; 32] = h.finalize().into();
    let cached = trust
        .cache
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    let signer = match cached {
        Some(c) if c.verified_from <= at && at <= c.verified_until => c,
        cached => {
            let mut fresh = verify_signer(r, trust, at)?;
            if let Some(c) = cached {
                fresh.verified_from = fresh.verified_from.min(c.verified_from);
                fresh.verified_until = fresh.verified_until.max(c.verified_until);
            }
            let mut map = trust.cache.0.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= MAX_SIGNERS {
                map.clear();
            }
            map.insert(key, fresh.clone());
            fresh
        }
    };
    // The allowlist is checked on every receipt (the cache holds what the evidence says).
    if !trust
        .executor_measurements
        .iter()
        .any(|m| m.eq_ignore_ascii_case(&signer.measurement))
    {
        return Err(ReceiptError::MeasurementNotAllowed(signer.measurement));
    }
    let sig = hex::decode(&r.signature)
        .map_err(|_| ReceiptError::Malformed("signature is not hex".into()))?;
    signer
        .public_key
        .verify(&r.body.signed_message(), &sig)
        .map_err(|_| ReceiptError::BadSignature)?;
    Ok(VerifiedReceipt {
        body: r.body.clone(),
        executor_measurement: signer.measurement,
        tee_label: signer.tee_label,
    })
}

/// Verifies the signer's evidence at `at`: root, role, allowed build, bound key.
fn verify_signer(r: &Receipt, trust: &ReceiptTrust, at: i64) -> Result<Signer, ReceiptError> {
    if r.signer.tee != "sim" {
        return Err(ReceiptError::UnsupportedTee(r.signer.tee.clone()));
    }
    let evidence = base64::engine::general_purpose::STANDARD
        .decode(&r.signer.evidence)
        .map_err(|_| ReceiptError::Malformed("evidence is not base64".into()))?;
    let ev = SimEvidence::parse(&evidence)?;
    let found = fingerprint(&ev.platform_cert);
    if !found.eq_ignore_ascii_case(trust.root_fingerprint.trim()) {
        return Err(ReceiptError::WrongRoot {
            found,
            pinned: trust.root_fingerprint.trim().to_ascii_lowercase(),
        });
    }
    let verified =
        SimVerifier::pinning(&ev.platform_cert)?.verify(&evidence, &Collateral::default(), at)?;
    if ev.role != "executor" {
        return Err(ReceiptError::WrongRole(ev.role));
    }
    let claims = verified.claims();
    let measurement = hex::encode(&claims.measurement.0);
    if !trust
        .executor_measurements
        .iter()
        .any(|m| m.eq_ignore_ascii_case(&measurement))
    {
        return Err(ReceiptError::MeasurementNotAllowed(measurement));
    }
    let public = hex::decode(&r.signer.public_key)
        .ok()
        .and_then(|b| VerifyingKey::from_slice(&b).ok())
        .ok_or_else(|| ReceiptError::Malformed("publicKey is not a hex Ed25519 key".into()))?;
    let bound = claims
        .report_data
        .as_ref()
        .is_some_and(|rd| cloister_crypto::ct_eq(&rd.0, &key_report_data(&public.0)));
    if !bound {
        return Err(ReceiptError::KeyUnbound);
    }
    Ok(Signer {
        public_key: public,
        measurement,
        tee_label: claims.tee.label().to_owned(),
        // Valid at `at` and until the chain's first expiry: anywhere in between too.
        verified_from: at,
        verified_until: verified.valid_until(),
    })
}

/// What the caller knows about its own call, to match a receipt against.
#[derive(Debug, Clone)]
pub struct CallFacts<'a> {
    /// The nonce sent (hex).
    pub nonce: &'a str,
    /// Hex SHA-256 of the input sent.
    pub input_sha256: String,
    /// Hex SHA-256 of the output received.
    pub output_sha256: String,
    /// `ok` or the error code received.
    pub outcome: &'a str,
    /// The execution id received.
    pub execution_id: &'a str,
    /// For a sealed call: function id, version and code hash sealed for, key id and request
    /// id.
    pub sealed: Option<(&'a crate::sealed::Target, &'a str, &'a str)>,
}

impl VerifiedReceipt {
    /// Checks the receipt names this call.
    pub fn check_call(&self, f: &CallFacts<'_>) -> Result<(), ReceiptError> {
        let b = &self.body;
        let mismatch = |field| Err(ReceiptError::NotThisCall { field });
        if !b.nonce.eq_ignore_ascii_case(f.nonce) {
            return mismatch("nonce");
        }
        if b.input_sha256 != f.input_sha256 {
            return mismatch("input digest");
        }
        if b.output_sha256 != f.output_sha256 {
            return mismatch("output digest");
        }
        if b.outcome != f.outcome {
            return mismatch("outcome");
        }
        if b.execution_id != f.execution_id {
            return mismatch("execution id");
        }
        match f.sealed {
            Some((t, key_id, request_id)) => {
                if b.function_id != t.function_id || b.version != t.version {
                    return mismatch("function");
                }
                if b.code_hash != t.code_hash {
                    return mismatch("code hash");
                }
                if !b.manifest_digest.eq_ignore_ascii_case(&t.manifest_digest) {
                    return mismatch("manifest digest");
                }
                if b.fleet_key_id != key_id {
                    return mismatch("fleet key id");
                }
                if b.request_id != request_id {
                    return mismatch("request id");
                }
            }
            None => {
                if !b.fleet_key_id.is_empty() || !b.request_id.is_empty() {
                    return mismatch("sealing");
                }
            }
        }
        Ok(())
    }
}
