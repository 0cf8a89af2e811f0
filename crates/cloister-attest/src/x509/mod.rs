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
