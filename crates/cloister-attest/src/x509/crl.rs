//! Certificate revocation lists (RFC 5280 §5), parsed with `x509-cert`.

use super::cert::pem_blocks;
use super::{Cert, UnixSecs, signed_range, unix_secs, verify_signature};
use crate::error::AttestError;
use crate::time_fmt::rfc3339;
use x509_cert::crl::CertificateList;
use x509_cert::der::{Decode, Encode};

/// A parsed CRL with the exact bytes its signature covers.
#[derive(Debug, Clone)]
pub struct Crl {
    der: Vec<u8>,
    tbs_range: std::ops::Range<usize>,
    parsed: CertificateList,
}

impl Crl {
    /// Parses one DER-encoded CRL.
    pub fn from_der(der: &[u8]) -> Result<Self, AttestError> {
        let bad =
            |e: x509_cert::der::Error| AttestError::Collateral(format!("unparsable CRL: {e}"));
        let parsed = CertificateList::from_der(der).map_err(bad)?;
        Ok(Self {
            tbs_range: signed_range(der).map_err(bad)?,
            der: der.to_vec(),
            parsed,
        })
    }

    /// SHA-256 of the DER encoding.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(&self.der).into()
    }

    /// Issuer DN as a string.
    pub fn issuer(&self) -> String {
        self.parsed.tbs_cert_list.issuer.to_string()
    }

    /// Whether this CRL's issuer name is `cert`'s subject name.
    pub fn issued_by_name(&self, cert: &Cert) -> bool {
        let a = self.parsed.tbs_cert_list.issuer.to_der();
        let b = cert.parsed().tbs_certificate.subject.to_der();
        matches!((a, b), (Ok(a), Ok(b)) if a == b)
    }

    /// Checks the CRL's signature by `issuer` and that it is current at `now`; returns `nextUpdate`.
    pub fn check(&self, issuer: &Cert, now: UnixSecs) -> Result<UnixSecs, AttestError> {
        if !issuer.may_sign_crls()? {
            return Err(AttestError::Collateral(format!(
                "keyUsage of `{}` does not allow CRL signing",
                issuer.subject()
            )));
        }
        verify_signature(
            &self.parsed.signature_algorithm,
            &issuer.parsed().tbs_certificate.subject_public_key_info,
            &self.der[self.tbs_range.clone()],
            self.parsed.signature.raw_bytes(),
        )
        .map_err(|e| AttestError::Collateral(format!("CRL from `{}`: {e}", self.issuer())))?;
        let this_update = unix_secs(&self.parsed.tbs_cert_list.this_update);
        if now < this_update {
            return Err(AttestError::Collateral(format!(
                "CRL from `{}` is not valid before {}",
                self.issuer(),
                rfc3339(this_update)
            )));
        }
        match self
            .parsed
            .tbs_cert_list
            .next_update
            .as_ref()
            .map(unix_secs)
        {
            Some(next) if now > next => Err(AttestError::Collateral(format!(
                "CRL from `{}` is stale: nextUpdate {} is before {}",
                self.issuer(),
                rfc3339(next),
                rfc3339(now)
            ))),
            Some(next) => Ok(next),
            None => Ok(UnixSecs::MAX),
        }
    }

    /// Whether the serial number `serial` (as encoded in the certificate) is listed.
    pub fn revokes(&self, serial: &[u8]) -> bool {
        self.parsed
            .tbs_cert_list
            .revoked_certificates
            .iter()
            .flatten()
            .any(|r| r.serial_number.as_bytes() == serial)
    }
}

/// Parses CRLs from PEM (`X509 CRL` blocks) or one DER CRL.
pub fn parse_crls(bytes: &[u8]) -> Result<Vec<Crl>, AttestError> {
    match std::str::from_utf8(bytes) {
        Ok(t) if t.contains("-----BEGIN X509 CRL-----") => pem_blocks(t, "X509 CRL")
            .map_err(|e| AttestError::Collateral(e.to_string()))?
            .iter()
            .map(|der| Crl::from_der(der))
            .collect(),
        _ => Ok(vec![Crl::from_der(bytes)?]),
    }
}
