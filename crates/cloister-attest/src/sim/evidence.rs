//! Sim evidence: decoding (strict) and verification against pinned sim platform roots.

use super::measure::MEASUREMENT_LEN;
use crate::claims::{Claims, Hex, SimDetail, TeeDetail, Verified};
use crate::error::AttestError;
use crate::tee::TeeType;
use crate::verifier::{Collateral, Verifier};
use crate::x509::{Anchor, Cert, UnixSecs, verify_chain};
use ciborium::Value;
use coset::{CoseSign1, TaggedCborSerializable, iana};
use std::collections::BTreeMap;

const FORMAT: &str = "sim";
/// Evidence layout version.
pub(crate) const VERSION: u64 = 1;
/// Largest role name accepted.
const MAX_ROLE: usize = 64;
/// Evidence dated this far after the verification time is rejected (clock skew allowance).
const MAX_FUTURE_SKEW_SECS: i64 = 60;

fn bad(reason: impl Into<String>) -> AttestError {
    AttestError::malformed(FORMAT, reason)
}

/// Decoded (not yet verified) sim evidence.
#[derive(Debug, Clone)]
pub struct SimEvidence {
    sign1: CoseSign1,
    /// Role that produced the evidence.
    pub role: String,
    /// The measurement.
    pub measurement: [u8; MEASUREMENT_LEN],
    /// Caller-chosen report data.
    pub report_data: [u8; 64],
    /// Production time, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// DER of the platform root that signed it.
    pub platform_cert: Vec<u8>,
}

fn fixed<const N: usize>(v: &Value, name: &str) -> Result<[u8; N], AttestError> {
    let b = v
        .as_bytes()
        .ok_or_else(|| bad(format!("`{name}` must be a byte string")))?;
    b.as_slice()
        .try_into()
        .map_err(|_| bad(format!("`{name}` is {} bytes, expected {N}", b.len())))
}

impl SimEvidence {
    /// Decodes evidence; every field must be present exactly once with the right type.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        let sign1 = CoseSign1::from_tagged_slice(bytes)
            .map_err(|e| bad(format!("not a tagged COSE_Sign1: {e}")))?;
        if sign1.protected.header.alg != Some(coset::Algorithm::Assigned(iana::Algorithm::ES384)) {
            return Err(bad("COSE algorithm is not ES384"));
        }
        let payload = sign1
            .payload
            .as_deref()
            .ok_or_else(|| bad("COSE_Sign1 has no payload"))?;
        let value: Value =
            ciborium::from_reader(payload).map_err(|e| bad(format!("payload is not CBOR: {e}")))?;
        let entries = value
            .into_map()
            .map_err(|_| bad("payload is not a CBOR map"))?;
        let mut fields = BTreeMap::new();
        for (k, v) in entries {
            let k = k
                .into_text()
                .map_err(|_| bad("payload keys must be text"))?;
            if fields.insert(k.clone(), v).is_some() {
                return Err(bad(format!("duplicate key `{k}`")));
            }
        }
        const KEYS: [&str; 7] = [
            "v",
            "tee",
            "role",
            "measurement",
            "report_data",
            "timestamp_ms",
            "platform_cert",
        ];
        if let Some(k) = fields.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(bad(format!("unknown key `{k}`")));
        }
        let get = |k: &str| fields.get(k).ok_or_else(|| bad(format!("missing `{k}`")));
        let version = get("v")?
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| bad("`v` must be an unsigned integer"))?;
        if version != VERSION {
            return Err(bad(format!("version {version} is not supported")));
        }
        if get("tee")?.as_text() != Some("sim") {
            return Err(bad("`tee` must be \"sim\""));
        }
        let role = get("role")?
            .as_text()
            .ok_or_else(|| bad("`role` must be text"))?
            .to_owned();
        if role.is_empty() || role.len() > MAX_ROLE {
            return Err(bad(format!("`role` must be 1..={MAX_ROLE} bytes")));
        }
        let timestamp_ms = get("timestamp_ms")?
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| bad("`timestamp_ms` must be an unsigned integer"))?;
        let platform_cert = get("platform_cert")?
            .as_bytes()
            .ok_or_else(|| bad("`platform_cert` must be a byte string"))?
            .clone();
        Ok(Self {
            measurement: fixed(get("measurement")?, "measurement")?,
            report_data: fixed(get("report_data")?, "report_data")?,
            sign1,
            role,
            timestamp_ms,
            platform_cert,
        })
    }

    /// The claims as decoded, without verification.
    pub fn claims(&self) -> Claims {
        use sha2::Digest;
        let mut svns = BTreeMap::new();
        svns.insert("version".to_owned(), VERSION);
        Claims {
            tee: TeeType::Sim,
            platform: TeeType::Sim.label().to_owned(),
            measurement: Hex(self.measurement.to_vec()),
            report_data: Some(Hex(self.report_data.to_vec())),
            debug: false,
            tcb_status: None,
            advisory_ids: Vec::new(),
            timestamp: i64::try_from(self.timestamp_ms / 1000).ok(),
            svns,
            detail: TeeDetail::Sim(SimDetail {
                role: self.role.clone(),
                sim_root: Hex(sha2::Sha256::digest(&self.platform_cert).to_vec()),
            }),
        }
    }
}

/// Verifies sim evidence against pinned sim platform roots.
#[derive(Debug, Clone)]
pub struct SimVerifier {
    anchors: Vec<Anchor>,
}

impl SimVerifier {
    /// A verifier trusting exactly these sim platform roots.
    pub fn new(anchors: Vec<Anchor>) -> Self {
        Self { anchors }
    }

    /// A verifier trusting one root, given as DER.
    pub fn pinning(root_der: &[u8]) -> Result<Self, AttestError> {
        Ok(Self::new(vec![Anchor {
            name: "sim-platform-root".into(),
            cert: Cert::from_der(root_der)?,
        }]))
    }
}

impl Verifier for SimVerifier {
    fn tee(&self) -> TeeType {
        TeeType::Sim
    }

    fn inspect(&self, evidence: &[u8]) -> Result<Claims, AttestError> {
        SimEvidence::parse(evidence).map(|e| e.claims())
    }

    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        now: UnixSecs,
    ) -> Result<Verified, AttestError> {
        let ev = SimEvidence::parse(evidence)?;
        // The signing certificate must itself be a pinned root (the sim has no intermediates);
        // comparing DER bytes finds it without parsing the embedded copy.
        let anchor = self
            .anchors
            .iter()
            .find(|a| a.cert.der() == ev.platform_cert.as_slice())
            .ok_or_else(|| {
                use sha2::Digest;
                AttestError::Chain(format!(
                    "sim platform root sha256 {} is not pinned",
                    hex::encode(sha2::Sha256::digest(&ev.platform_cert))
                ))
            })?;
        let cert = &anchor.cert;
        let chain = verify_chain(
            std::slice::from_ref(cert),
            std::slice::from_ref(anchor),
            now,
            &collateral.crls,
        )?;
        crate::cose::verify_es384(&ev.sign1, cert, "sim evidence")?;
        let claims = ev.claims();
        if let Some(ts) = claims.timestamp
            && ts > now.saturating_add(MAX_FUTURE_SKEW_SECS)
        {
            return Err(AttestError::Inconsistent(format!(
                "sim evidence is dated {} s after the verification time",
                ts - now
            )));
        }
        Ok(Verified::from_chain(claims, &chain, now, evidence))
    }
}
