//! Attestation for Cloister: decode and verify TEE evidence, apply policy, cache results,
//! and produce evidence inside a TEE.
//!
//! Verification is pure and deterministic: evidence + collateral + trust anchors + time
//! → a [`Verified`] result or a precise [`AttestError`]. Policy evaluation is separate
//! ([`Policy::evaluate`]) and reports every violated rule.

pub mod attester;
pub mod cache;
pub mod claims;
mod cose;
pub mod dcap;
pub mod error;
pub mod fetch;
pub mod input;
pub mod nitro;
pub mod policy;
pub mod roots;
pub mod sim;
pub mod snp;
pub mod tee;
pub mod time_fmt;
pub mod verifier;
pub mod x509;

pub use cache::VerificationCache;
pub use claims::{Claims, Hex, TeeDetail, Verified};
pub use error::AttestError;
pub use input::{Format, decode_text_or_binary, detect_format};
pub use policy::{Policy, PolicyError, Violation};
pub use roots::TrustStore;
pub use tee::TeeType;
pub use verifier::{Collateral, Verifier, VerifierSet};
