//! Chain validation from an attesting certificate up to a pinned trust anchor.

use super::{Cert, Crl, UnixSecs, verify_signature};
use crate::error::AttestError;
use crate::time_fmt::rfc3339;
use x509_cert::der::oid::ObjectIdentifier;

/// Critical extensions a chain may carry; any other critical extension rejects the chain.
const UNDERSTOOD_CRITICAL: [ObjectIdentifier; 4] = [
    ObjectIdentifier::new_unwrap("2.5.29.19"), // basicConstraints
    ObjectIdentifier::new_unwrap("2.5.29.15"), // keyUsage
    ObjectIdentifier::new_unwrap("2.5.29.37"), // extKeyUsage
    ObjectIdentifier::new_unwrap("2.5.29.17"), // subjectAltName
];

/// A trust anchor, pinned by the SHA-256 of its DER encoding (never by its name).
#[derive(Debug, Clone)]
pub struct Anchor {
    /// Short name used in reports, e.g. `aws-nitro-root-g1`.
    pub name: String,
    /// The anchor certificate.
    pub cert: Cert,
}

/// A chain that validated: leaf first, anchor last.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// Every certificate from the leaf to the anchor, inclusive.
    pub certs: Vec<Cert>,
    /// Name of the anchor the chain ends at.
    pub anchor: String,
    /// Earliest `notAfter` of the chain and `nextUpdate` of the CRLs used: when this result expires.
    pub valid_until: UnixSecs,
    /// Number of CRLs that applied to some link of the chain.
    pub crls_checked: usize,
}

/// Validates `path` (leaf first) at time `now` against `anchors`, checking `crls` when they apply.
///
/// The top of `path` may be the anchor itself or a certificate issued by it.
pub fn verify_chain(
    path: &[Cert],
    anchors: &[Anchor],
    now: UnixSecs,
    crls: &[Crl],
) -> Result<VerifiedChain, AttestError> {
    let top = path
        .last()
        .ok_or_else(|| AttestError::Chain("empty certificate chain".into()))?;
    let mut full: Vec<Cert> = path.to_vec();
    let anchor = match anchors
        .iter()
        .find(|a| a.cert.fingerprint() == top.fingerprint())
    {
        Some(anchor) => anchor,
        None => {
            let by_name: Vec<&Anchor> = anchors
                .iter()
                .filter(|a| top.issued_by_name(&a.cert))
                .collect();
            let signed = by_name.iter().copied().find(|a| {
                verify_signature(
                    &top.parsed().signature_algorithm,
                    &a.cert.parsed().tbs_certificate.subject_public_key_info,
                    top.tbs(),
                    top.parsed().signature.raw_bytes(),
                )
                .is_ok()
            });
            match signed {
                Some(anchor) => {
                    full.push(anchor.cert.clone());
                    anchor
                }
                None if !by_name.is_empty() => {
                    return Err(AttestError::Chain(format!(
                        "`{}` names the pinned root `{}` as issuer but is not signed by its key (sha256 {})",
                        top.subject(),
                        top.issuer(),
                        hex::encode(top.fingerprint())
                    )));
                }
                None => {
                    return Err(AttestError::Chain(format!(
                        "chain ends at `{}` (sha256 {}), which is not a pinned root and not issued by one",
                        top.subject(),
                        hex::encode(top.fingerprint())
                    )));
                }
            }
        }
    };

    for (i, pair) in full.windows(2).enumerate() {
        let (child, parent) = (&pair[0], &pair[1]);
        if !child.issued_by_name(parent) {
            return Err(AttestError::Chain(format!(
                "issuer `{}` of `{}` is not the subject `{}` of the next certificate",
                child.issuer(),
                child.subject(),
                parent.subject()
            )));
        }
        match parent.ca_constraint()? {
            None => {
                return Err(AttestError::Chain(format!(
                    "`{}` signs a certificate but is not a CA",
                    parent.subject()
                )));
            }
            Some(Some(max)) if i > usize::from(max) => {
                return Err(AttestError::Chain(format!(
                    "`{}` allows {max} intermediate CA(s) below it, chain has {i}",
                    parent.subject()
                )));
            }
            Some(_) => {}
        }
        if !parent.may_sign_certs()? {
            return Err(AttestError::Chain(format!(
                "keyUsage of `{}` does not allow certificate signing",
                parent.subject()
            )));
        }
        verify_signature(
            &child.parsed().signature_algorithm,
            &parent.parsed().tbs_certificate.subject_public_key_info,
            child.tbs(),
            child.parsed().signature.raw_bytes(),
        )
        .map_err(|e| {
            AttestError::Chain(format!(
                "`{}` signed by `{}`: {e}",
                child.subject(),
                parent.subject()
            ))
        })?;
    }

    let mut valid_until = UnixSecs::MAX;
    for cert in &full {
        let (not_before, not_after) = cert.validity();
        if now < not_before {
            return Err(AttestError::Chain(format!(
                "`{}` is not valid before {} (verification time {})",
                cert.subject(),
                rfc3339(not_before),
                rfc3339(now)
            )));
        }
        if now > not_after {
            return Err(AttestError::Chain(format!(
                "`{}` expired at {} (verification time {})",
                cert.subject(),
                rfc3339(not_after),
                rfc3339(now)
            )));
        }
        valid_until = valid_until.min(not_after);
        if let Some(oid) = cert
            .critical_extensions()
            .into_iter()
            .find(|oid| !UNDERSTOOD_CRITICAL.contains(oid))
        {
            return Err(AttestError::Chain(format!(
                "`{}` has an unknown critical extension {oid}",
                cert.subject()
            )));
        }
    }

    let mut crls_checked = 0;
    for pair in full.windows(2) {
        let (child, parent) = (&pair[0], &pair[1]);
        for crl in crls.iter().filter(|c| c.issued_by_name(parent)) {
            let next_update = crl.check(parent, now)?;
            crls_checked += 1;
            valid_until = valid_until.min(next_update);
            if crl.revokes(child.serial_bytes()) {
                return Err(AttestError::Revoked {
                    subject: child.subject(),
                    serial: child.serial_hex(),
                    issuer: parent.subject(),
                });
            }
        }
    }

    Ok(VerifiedChain {
        certs: full,
        anchor: anchor.name.clone(),
        valid_until,
        crls_checked,
    })
}
