//! COSE_Sign1 signature check shared by the formats that use it (Nitro, sim).

use crate::error::AttestError;
use crate::x509::{Cert, verify_p384_raw};
use coset::CoseSign1;

/// Checks an ES384 COSE_Sign1 (no external AAD) against `signer`'s P-384 key; `what` names
/// the document in errors.
pub(crate) fn verify_es384(
    sign1: &CoseSign1,
    signer: &Cert,
    what: &str,
) -> Result<(), AttestError> {
    let sig = &sign1.signature;
    if sig.len() != 96 {
        return Err(AttestError::bad_signature(format!(
            "{what} ES384 signature is {} bytes, expected 96",
            sig.len()
        )));
    }
    let spki = &signer.parsed().tbs_certificate.subject_public_key_info;
    verify_p384_raw(
        spki.subject_public_key.raw_bytes(),
        &sign1.tbs_data(&[]),
        &sig[..48],
        &sig[48..],
    )
    .map_err(|e| AttestError::bad_signature(format!("{what} ({e})")))
}
