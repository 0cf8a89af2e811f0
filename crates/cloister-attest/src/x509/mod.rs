//! X.509 certificates, chains and CRLs, parsed with `x509-cert` and checked with RustCrypto.
//!
//! Attestation chains are short and fixed in shape (vendor root → one or two
//! intermediates → attesting key), so validation here is deliberately narrow:
//! name chaining, signatures, validity at a given time, CA constraints, key usage,
//! revocation by CRL, and a trust anchor pinned by the SHA-256 of its DER.

mod cert;
mod chain;
mod crl;
mod sig;

pub use cert::{Cert, CertSummary, parse_certs};
pub use chain::{Anchor, VerifiedChain, verify_chain};
pub use crl::{Crl, parse_crls};
pub(crate) use sig::{verify_p384_raw, verify_signature};

/// Seconds since the Unix epoch; the unit of every time comparison in this crate.
pub type UnixSecs = i64;

/// Byte range of the first element inside the outer SEQUENCE of `der`: the exact
/// to-be-signed bytes of a certificate or CRL, located rather than re-encoded.
pub(crate) fn signed_range(der: &[u8]) -> Result<std::ops::Range<usize>, x509_cert::der::Error> {
    use x509_cert::der::{Decode, Encode, Header, Reader, SliceReader};
    let mut outer = SliceReader::new(der)?;
    let header = Header::decode(&mut outer)?;
    let start = usize::try_from(u32::from(header.encoded_len()?))
        .map_err(|_| x509_cert::der::ErrorKind::Overflow)?;
    let tbs = outer.tlv_bytes()?;
    Ok(start..start + tbs.len())
}

/// An X.509 time as Unix seconds (saturating).
pub(crate) fn unix_secs(t: &x509_cert::time::Time) -> UnixSecs {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}
