//! Checking invocation receipts (see `cloister_types::receipt`), online after each call or
//! offline years later: the signer's evidence must chain to the pinned root at the
//! receipt's time, come from an executor build keyvault allowed, and bind the key that
//! signed; then the receipt must name this call.

use base64::Engine as _;
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
///
/// It also remembers the last signer met, which calls name in `receiptSigner` so that
/// executor leaves its evidence out of the receipts it signs for them
/// ([`SignerCache::known_signer`]); the evidence is filled back in from here.
#[derive(Debug, Clone, Default)]
pub struct SignerCache(std::sync::Arc<std::sync::Mutex<Signers>>);

/// The cache's contents.
#[derive(Debug, Default)]
struct Signers {
    /// By [`signer_id`].
    verified: std::collections::HashMap<[u8; 32], Signer>,
    /// The last signer met: the root it was verified under, its public key (hex), its TEE.
    last: Option<(String, String, String)>,
}

/// One verified signer.
#[derive(Debug, Clone)]
struct Signer {
    public_key: VerifyingKey,
    /// The evidence (base64) that certified it.
    evidence: String,
    measurement: String,
    tee_label: String,
    verified_from: i64,
    verified_until: i64,
}

/// A cache entry's id: the TEE, the key and the root it was verified under.
fn signer_id(tee: &str, public_key: &str, root: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [tee, public_key, root.trim()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

impl SignerCache {
    /// The receipt key (hex) of the last signer verified under `root_fingerprint`, to send as
    /// `receiptSigner`: that executor then leaves its evidence out of the receipt.
    ///
    /// Only while this cache still holds that signer, verified for now: a receipt without
    /// evidence must be one it can check.
    pub fn known_signer(&self, root_fingerprint: &str) -> Option<String> {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (root, key, tee) = g.last.as_ref()?;
        if !root.eq_ignore_ascii_case(root_fingerprint.trim()) {
            return None;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let s = g.verified.get(&signer_id(tee, key, root))?;
        (s.verified_from <= now.saturating_add(60) && now < s.verified_until).then(|| key.clone())
    }
}

/// Most signers kept (one per executor process met).
const MAX_SIGNERS: usize = 256;

/// A receipt whose signature and signer checked out.
#[derive(Debug, Clone)]
pub struct VerifiedReceipt {
    /// What it states.
    pub body: ReceiptBody,
    /// The evidence (base64) that certified the signer: the receipt's own, or the one this
    /// client verified earlier when the receipt left it out.
    pub signer_evidence: String,
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
    /// The signer's evidence is not accepted (kind, root, signature, validity at the
    /// receipt's time).
    #[error("the signer's evidence at the receipt's time: {0}")]
    Evidence(#[from] crate::evidence::EvidenceError),
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
    /// The receipt leaves out its signer's evidence, and this client holds none valid then.
    #[error(
        "the receipt leaves out its signer's evidence and this client has not verified that \
         signer for the receipt's time"
    )]
    SignerUnknown,
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

/// Verifies `r`'s signer and signature against `trust`, at the receipt's own time.
pub fn verify_receipt(r: &Receipt, trust: &ReceiptTrust) -> Result<VerifiedReceipt, ReceiptError> {
    let at = i64::try_from(r.body.time)
        .map_err(|_| ReceiptError::Malformed("time is out of range".into()))?;
    let id = signer_id(&r.signer.tee, &r.signer.public_key, &trust.root_fingerprint);
    let cached = trust
        .cache
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .verified
        .get(&id)
        .cloned();
    let left_out = r.signer.evidence.is_empty();
    let signer = match cached {
        // The same evidence as verified (or none, meaning that one), at a time it covers.
        Some(c)
            if (left_out || c.evidence == r.signer.evidence)
                && c.verified_from <= at
                && at <= c.verified_until =>
        {
            c
        }
        _ if left_out => return Err(ReceiptError::SignerUnknown),
        cached => {
            let mut fresh = verify_signer(r, trust, at)?;
            if let Some(c) = cached.filter(|c| c.evidence == fresh.evidence) {
                fresh.verified_from = fresh.verified_from.min(c.verified_from);
                fresh.verified_until = fresh.verified_until.max(c.verified_until);
            }
            let mut g = trust.cache.0.lock().unwrap_or_else(|p| p.into_inner());
            if g.verified.len() >= MAX_SIGNERS {
                g.verified.clear();
            }
            g.verified.insert(id, fresh.clone());
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
    trust.cache.0.lock().unwrap_or_else(|p| p.into_inner()).last = Some((
        trust.root_fingerprint.trim().to_owned(),
        r.signer.public_key.clone(),
        r.signer.tee.clone(),
    ));
    Ok(VerifiedReceipt {
        body: r.body.clone(),
        signer_evidence: signer.evidence,
        executor_measurement: signer.measurement,
        tee_label: signer.tee_label,
    })
}

/// Verifies the signer's evidence at `at`: root, role, allowed build, bound key.
fn verify_signer(r: &Receipt, trust: &ReceiptTrust, at: i64) -> Result<Signer, ReceiptError> {
    let evidence = base64::engine::general_purpose::STANDARD
        .decode(&r.signer.evidence)
        .map_err(|_| ReceiptError::Malformed("evidence is not base64".into()))?;
    let ev = crate::evidence::verify_evidence(
        &r.signer.tee,
        &evidence,
        std::slice::from_ref(&trust.root_fingerprint),
        at,
    )?;
    // Hardware evidence names no role: the bundle's check that keyvault's build is not on
    // its executor allowlist makes an allowed measurement an executor's.
    if let Some(role) = ev.role.filter(|r| r != "executor") {
        return Err(ReceiptError::WrongRole(role));
    }
    if !trust
        .executor_measurements
        .iter()
        .any(|m| m.eq_ignore_ascii_case(&ev.measurement))
    {
        return Err(ReceiptError::MeasurementNotAllowed(ev.measurement));
    }
    let public = hex::decode(&r.signer.public_key)
        .ok()
        .and_then(|b| VerifyingKey::from_slice(&b).ok())
        .ok_or_else(|| ReceiptError::Malformed("publicKey is not a hex Ed25519 key".into()))?;
    let bound = ev
        .report_data
        .as_ref()
        .is_some_and(|rd| cloister_crypto::ct_eq(rd, &key_report_data(&public.0)));
    if !bound {
        return Err(ReceiptError::KeyUnbound);
    }
    Ok(Signer {
        public_key: public,
        evidence: r.signer.evidence.clone(),
        measurement: ev.measurement,
        tee_label: ev.tee_label,
        // Valid at `at` and until the chain's first expiry: anywhere in between too.
        verified_from: at,
        verified_until: ev.valid_until,
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
    /// `r` (the receipt this verified) with its signer's evidence filled in when it was left
    /// out, so it verifies on its own, offline, later.
    pub fn complete(&self, mut r: Receipt) -> Receipt {
        if r.signer.evidence.is_empty() {
            r.signer.evidence = self.signer_evidence.clone();
        }
        r
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A receipt whose signer presents a real Nitro document (which binds no receipt key).
    #[test]
    fn a_nitro_signer_is_checked_for_its_build_and_its_key() {
        const PCR0: &str = "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b";
        const ROOT: &str = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";
        let doc = include_bytes!(
            "../../cloister-attest/testdata/nitro/nitro_evervault_2022-10-13_prod.cbor"
        );
        let r = Receipt {
            body: ReceiptBody {
                function_id: "f".into(),
                version: 1,
                code_hash: String::new(),
                manifest_digest: String::new(),
                input_sha256: String::new(),
                output_sha256: String::new(),
                outcome: "ok".into(),
                execution_id: "e".into(),
                time: 1_665_651_600,
                nonce: "00".into(),
                fleet_key_id: String::new(),
                request_id: String::new(),
                key_uses: Vec::new(),
                egress: Vec::new(),
            },
            signature: "00".repeat(64),
            signer: cloister_types::receipt::ReceiptSigner {
                tee: "nitro".into(),
                public_key: "11".repeat(32),
                evidence: base64::engine::general_purpose::STANDARD.encode(doc),
            },
        };
        let allowed = ReceiptTrust::new(ROOT.into(), vec![PCR0.into()]);
        assert!(matches!(
            verify_receipt(&r, &allowed),
            Err(ReceiptError::KeyUnbound)
        ));
        let other_build = ReceiptTrust::new(ROOT.into(), vec!["aa".repeat(48)]);
        assert!(matches!(
            verify_receipt(&r, &other_build),
            Err(ReceiptError::MeasurementNotAllowed(m)) if m == PCR0
        ));
        // Checked at the receipt's time: a receipt dated after the chain expired fails.
        let mut late = r.clone();
        late.body.time += 86_400;
        assert!(matches!(
            verify_receipt(&late, &allowed),
            Err(ReceiptError::Evidence(_))
        ));
    }
}
