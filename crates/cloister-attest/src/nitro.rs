//! AWS Nitro Enclaves attestation documents.
//!
//! Follows AWS's published verification procedure: COSE_Sign1 with ES384, a CBOR payload
//! whose mandatory fields are type- and length-checked, and a chain from `certificate`
//! through `cabundle` to the pinned AWS Nitro Enclaves Root G1, valid at the verification time.

use crate::claims::{Claims, Hex, NitroDetail, TeeDetail, Verified};
use crate::error::AttestError;
use crate::tee::TeeType;
use crate::verifier::{Collateral, Verifier};
use crate::x509::{Anchor, Cert, UnixSecs, verify_chain};
use ciborium::Value;
use coset::{CborSerializable, CoseSign1, TaggedCborSerializable, iana};
use std::collections::BTreeMap;

const FORMAT: &str = "nitro";

/// A decoded (not yet verified) Nitro attestation document.
#[derive(Debug, Clone)]
pub struct NitroDocument {
    sign1: CoseSign1,
    /// Decoded payload fields.
    pub detail: NitroDetail,
    /// Leaf certificate (DER).
    pub certificate: Vec<u8>,
    /// CA bundle, root first (DER).
    pub cabundle: Vec<Vec<u8>>,
}

fn bad(reason: impl Into<String>) -> AttestError {
    AttestError::malformed(FORMAT, reason)
}

fn bytes_field(v: &Value, name: &str, min: usize, max: usize) -> Result<Vec<u8>, AttestError> {
    let b = v
        .as_bytes()
        .ok_or_else(|| bad(format!("`{name}` must be a byte string")))?;
    if b.len() < min || b.len() > max {
        return Err(bad(format!(
            "`{name}` is {} bytes, expected {min}..={max}",
            b.len()
        )));
    }
    Ok(b.clone())
}

fn optional_bytes(v: Option<&Value>, name: &str, max: usize) -> Result<Option<Hex>, AttestError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => bytes_field(v, name, 0, max).map(|b| Some(Hex(b))),
    }
}

impl NitroDocument {
    /// Decodes a document (tagged or untagged COSE_Sign1) and checks its payload shape.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        let sign1 = if bytes.starts_with(&[0xd2]) {
            CoseSign1::from_tagged_slice(bytes)
        } else {
            CoseSign1::from_slice(bytes)
        }
        .map_err(|e| bad(format!("not a COSE_Sign1 structure: {e}")))?;
        if sign1.protected.header.alg != Some(coset::Algorithm::Assigned(iana::Algorithm::ES384)) {
            return Err(bad("protected header must say alg ES384"));
        }
        let payload = sign1
            .payload
            .as_deref()
            .ok_or_else(|| bad("detached payload"))?;
        let value: Value =
            ciborium::from_reader(payload).map_err(|e| bad(format!("payload is not CBOR: {e}")))?;
        let entries = value
            .as_map()
            .ok_or_else(|| bad("payload must be a CBOR map"))?;
        let mut fields: BTreeMap<&str, &Value> = BTreeMap::new();
        for (k, v) in entries {
            let key = k
                .as_text()
                .ok_or_else(|| bad("payload keys must be text"))?;
            if fields.insert(key, v).is_some() {
                return Err(bad(format!("duplicate payload key `{key}`")));
            }
        }
        let get = |name: &str| {
            fields
                .get(name)
                .copied()
                .ok_or_else(|| bad(format!("missing mandatory field `{name}`")))
        };
        let module_id = get("module_id")?
            .as_text()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("`module_id` must be a non-empty text string"))?
            .to_owned();
        let digest = get("digest")?
            .as_text()
            .ok_or_else(|| bad("`digest` must be text"))?
            .to_owned();
        if digest != "SHA384" {
            return Err(bad(format!("`digest` is `{digest}`, expected SHA384")));
        }
        let timestamp_ms = get("timestamp")?
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .filter(|t| *t > 0)
            .ok_or_else(|| bad("`timestamp` must be a positive integer"))?;
        let pcr_map = get("pcrs")?
            .as_map()
            .ok_or_else(|| bad("`pcrs` must be a map"))?;
        if pcr_map.is_empty() || pcr_map.len() > 32 {
            return Err(bad(format!(
                "`pcrs` has {} entries, expected 1..=32",
                pcr_map.len()
            )));
        }
        let mut pcrs = BTreeMap::new();
        for (k, v) in pcr_map {
            let index = k
                .as_integer()
                .and_then(|i| u8::try_from(i).ok())
                .filter(|i| *i < 32)
                .ok_or_else(|| bad("PCR index must be an integer 0..=31"))?;
            let value = v
                .as_bytes()
                .ok_or_else(|| bad(format!("PCR{index} must be bytes")))?;
            if !matches!(value.len(), 32 | 48 | 64) {
                return Err(bad(format!(
                    "PCR{index} is {} bytes, expected 32, 48 or 64",
                    value.len()
                )));
            }
            if pcrs.insert(index, Hex(value.clone())).is_some() {
                return Err(bad(format!("duplicate PCR{index}")));
            }
        }
        let certificate = bytes_field(get("certificate")?, "certificate", 1, 1024)?;
        let bundle = get("cabundle")?
            .as_array()
            .ok_or_else(|| bad("`cabundle` must be an array"))?;
        if bundle.is_empty() {
            return Err(bad("`cabundle` is empty"));
        }
        let cabundle = bundle
            .iter()
            .map(|c| bytes_field(c, "cabundle entry", 1, 1024))
            .collect::<Result<Vec<_>, _>>()?;
        let detail = NitroDetail {
            module_id,
            digest,
            timestamp_ms,
            pcrs,
            public_key: optional_bytes(fields.get("public_key").copied(), "public_key", 1024)?,
            user_data: optional_bytes(fields.get("user_data").copied(), "user_data", 512)?,
            nonce: optional_bytes(fields.get("nonce").copied(), "nonce", 512)?,
        };
        Ok(Self {
            sign1,
            detail,
            certificate,
            cabundle,
        })
    }

    /// The claims as decoded, without any verification.
    pub fn claims(&self) -> Claims {
        let pcr = |i: u8| self.detail.pcrs.get(&i).cloned().unwrap_or_default();
        let pcr0 = pcr(0);
        // A debug-mode enclave reports all-zero PCR0, PCR1, PCR2 (AWS documentation).
        let debug = [0u8, 1, 2].iter().all(|i| pcr(*i).is_zero());
        Claims {
            tee: TeeType::Nitro,
            platform: "AWS Nitro".into(),
            measurement: pcr0,
            report_data: None,
            debug,
            tcb_status: None,
            advisory_ids: Vec::new(),
            timestamp: i64::try_from(self.detail.timestamp_ms / 1000).ok(),
            svns: BTreeMap::new(),
            detail: TeeDetail::Nitro(self.detail.clone()),
        }
    }
}

/// Verifies Nitro documents against pinned AWS roots.
#[derive(Debug, Clone)]
pub struct NitroVerifier {
    anchors: Vec<Anchor>,
}

impl NitroVerifier {
    /// A verifier trusting exactly `anchors`.
    pub fn new(anchors: Vec<Anchor>) -> Self {
        Self { anchors }
    }
}

impl Verifier for NitroVerifier {
    fn tee(&self) -> TeeType {
        TeeType::Nitro
    }

    fn inspect(&self, evidence: &[u8]) -> Result<Claims, AttestError> {
        NitroDocument::parse(evidence).map(|d| d.claims())
    }

    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        now: UnixSecs,
    ) -> Result<Verified, AttestError> {
        let doc = NitroDocument::parse(evidence)?;
        let leaf = Cert::from_der(&doc.certificate)?;
        let mut path = vec![leaf];
        for der in doc.cabundle.iter().rev() {
            path.push(Cert::from_der(der)?);
        }
        let chain = verify_chain(&path, &self.anchors, now, &collateral.crls)?;
        crate::cose::verify_es384(&doc.sign1, &chain.certs[0], "COSE_Sign1")?;
        Ok(Verified::from_chain(doc.claims(), &chain, now, evidence))
    }
}
