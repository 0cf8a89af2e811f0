//! One parsed certificate plus the raw bytes its signature covers.

use super::{UnixSecs, signed_range, unix_secs};
use crate::error::AttestError;
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};

/// A decoded X.509 certificate with its DER, to-be-signed bytes and fingerprint.
#[derive(Clone)]
pub struct Cert {
    der: Vec<u8>,
    tbs_range: std::ops::Range<usize>,
    parsed: Certificate,
    fingerprint: [u8; 32],
}

/// What a certificate looks like in a verification report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// Subject distinguished name (RFC 4514 string).
    pub subject: String,
    /// Issuer distinguished name (RFC 4514 string).
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// SHA-256 of the DER encoding, lowercase hex.
    pub sha256: String,
}

impl std::fmt::Debug for Cert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cert")
            .field("subject", &self.subject())
            .field("sha256", &hex::encode(self.fingerprint))
            .finish()
    }
}

impl Cert {
    /// Parses one DER certificate; trailing bytes are an error.
    pub fn from_der(der: &[u8]) -> Result<Self, AttestError> {
        let bad =
            |e: x509_cert::der::Error| AttestError::Chain(format!("unparsable certificate: {e}"));
        let parsed = Certificate::from_der(der).map_err(bad)?;
        let tbs_range = signed_range(der).map_err(bad)?;
        Ok(Self {
            der: der.to_vec(),
            tbs_range,
            parsed,
            fingerprint: Sha256::digest(der).into(),
        })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The bytes covered by the issuer's signature.
    pub fn tbs(&self) -> &[u8] {
        &self.der[self.tbs_range.clone()]
    }

    /// The parsed certificate.
    pub fn parsed(&self) -> &Certificate {
        &self.parsed
    }

    /// SHA-256 of the DER encoding.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Subject DN as a string.
    pub fn subject(&self) -> String {
        self.parsed.tbs_certificate.subject.to_string()
    }

    /// Issuer DN as a string.
    pub fn issuer(&self) -> String {
        self.parsed.tbs_certificate.issuer.to_string()
    }

    /// Serial number as lowercase hex (AMD VCEKs use serial 0).
    pub fn serial_hex(&self) -> String {
        hex::encode(self.parsed.tbs_certificate.serial_number.as_bytes())
    }

    /// Raw serial number bytes as encoded.
    pub fn serial_bytes(&self) -> &[u8] {
        self.parsed.tbs_certificate.serial_number.as_bytes()
    }

    /// Whether this certificate's issuer name equals `other`'s subject name (DER equality).
    pub fn issued_by_name(&self, other: &Cert) -> bool {
        let a = self.parsed.tbs_certificate.issuer.to_der();
        let b = other.parsed.tbs_certificate.subject.to_der();
        matches!((a, b), (Ok(a), Ok(b)) if a == b)
    }

    /// Validity window as Unix seconds.
    pub fn validity(&self) -> (UnixSecs, UnixSecs) {
        let v = &self.parsed.tbs_certificate.validity;
        (unix_secs(&v.not_before), unix_secs(&v.not_after))
    }

    /// Raw value of the extension with `oid`, if present.
    pub fn extension(&self, oid: &x509_cert::der::oid::ObjectIdentifier) -> Option<&[u8]> {
        self.parsed
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| &e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    /// OIDs of critical extensions.
    pub fn critical_extensions(&self) -> Vec<x509_cert::der::oid::ObjectIdentifier> {
        self.parsed
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.critical)
            .map(|e| e.extn_id)
            .collect()
    }

    /// `Some(path_len)` when basicConstraints says this is a CA, `None` otherwise.
    pub fn ca_constraint(&self) -> Result<Option<Option<u8>>, AttestError> {
        use x509_cert::der::oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS;
        let Some(raw) = self.extension(&ID_CE_BASIC_CONSTRAINTS) else {
            return Ok(None);
        };
        let bc = BasicConstraints::from_der(raw).map_err(|e| {
            AttestError::Chain(format!("{}: bad basicConstraints: {e}", self.subject()))
        })?;
        Ok(bc.ca.then_some(bc.path_len_constraint))
    }

    /// Whether keyUsage (if present) allows signing certificates.
    pub fn may_sign_certs(&self) -> Result<bool, AttestError> {
        self.key_usage_allows(KeyUsages::KeyCertSign)
    }

    /// Whether keyUsage (if present) allows signing CRLs.
    pub fn may_sign_crls(&self) -> Result<bool, AttestError> {
        self.key_usage_allows(KeyUsages::CRLSign)
    }

    fn key_usage_allows(&self, usage: KeyUsages) -> Result<bool, AttestError> {
        use x509_cert::der::oid::db::rfc5280::ID_CE_KEY_USAGE;
        let Some(raw) = self.extension(&ID_CE_KEY_USAGE) else {
            return Ok(true);
        };
        let ku = KeyUsage::from_der(raw)
            .map_err(|e| AttestError::Chain(format!("{}: bad keyUsage: {e}", self.subject())))?;
        Ok(ku.0.contains(usage))
    }

    /// A summary for reports.
    pub fn summary(&self) -> CertSummary {
        let (nb, na) = self.validity();
        CertSummary {
            subject: self.subject(),
            issuer: self.issuer(),
            serial: self.serial_hex(),
            not_before: crate::time_fmt::rfc3339(nb),
            not_after: crate::time_fmt::rfc3339(na),
            sha256: hex::encode(self.fingerprint),
        }
    }
}

/// Parses certificates from PEM (one or more blocks) or a single DER certificate.
pub fn parse_certs(bytes: &[u8]) -> Result<Vec<Cert>, AttestError> {
    let text = std::str::from_utf8(bytes).ok();
    match text {
        Some(t) if t.contains("-----BEGIN CERTIFICATE-----") => pem_blocks(t, "CERTIFICATE")?
            .iter()
            .map(|der| Cert::from_der(der))
            .collect(),
        _ => Ok(vec![Cert::from_der(bytes)?]),
    }
}

/// Decodes every PEM block with `label` in `text` (blocks are split here, decoded by `pem-rfc7468`).
pub(crate) fn pem_blocks(text: &str, label: &str) -> Result<Vec<Vec<u8>>, AttestError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let Some(stop) = rest[start..].find(&end) else {
            return Err(AttestError::Chain(format!(
                "unterminated PEM {label} block"
            )));
        };
        let block = &rest[start..start + stop + end.len()];
        let (found, der) = pem_rfc7468::decode_vec(block.as_bytes())
            .map_err(|e| AttestError::Chain(format!("bad PEM {label} block: {e}")))?;
        if found != label {
            return Err(AttestError::Chain(format!(
                "expected PEM {label}, found {found}"
            )));
        }
        out.push(der);
        rest = &rest[start + stop + end.len()..];
    }
    Ok(out)
}
