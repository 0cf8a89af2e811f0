//! Signature checks for the algorithms that appear in TEE vendor chains.
//!
//! ECDSA P-256/SHA-256 (Intel), ECDSA P-384/SHA-384 (AWS, AMD VCEK reports),
//! RSASSA-PSS with SHA-256/384 (AMD ARK/ASK), and PKCS#1 v1.5 RSA for configured extra roots.

use aws_lc_rs::signature::{self as lc, UnparsedPublicKey};
use rsa::pkcs1::{DecodeRsaPublicKey, RsaPssParams};
use rsa::signature::Verifier;
use sha2::{Sha256, Sha384};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SigError {
    /// The algorithm or key type is not one this crate accepts.
    Unsupported(String),
    /// The key, signature or parameters are malformed.
    Malformed(String),
    /// Well-formed, but the signature is wrong.
    Invalid,
}

impl std::fmt::Display for SigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsupported(what) => write!(f, "unsupported signature algorithm: {what}"),
            Self::Malformed(what) => write!(f, "malformed signature input: {what}"),
            Self::Invalid => f.write_str("signature does not verify"),
        }
    }
}

/// Verifies an X.509-style signature (DER ECDSA or RSA) by `signer` over `msg`.
pub(crate) fn verify_signature(
    alg: &AlgorithmIdentifierOwned,
    signer: &SubjectPublicKeyInfoOwned,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), SigError> {
    let key = signer.subject_public_key.raw_bytes();
    match alg.oid {
        // aws-lc-rs verifies ECDSA several times faster than the pure-Rust curves.
        ECDSA_SHA256 => {
            require_point(key, 65, "ecdsa-with-SHA256 needs a P-256 key")?;
            UnparsedPublicKey::new(&lc::ECDSA_P256_SHA256_ASN1, key)
                .verify(msg, sig)
                .map_err(|_| SigError::Invalid)
        }
        ECDSA_SHA384 => {
            require_point(key, 97, "ecdsa-with-SHA384 needs a P-384 key")?;
            UnparsedPublicKey::new(&lc::ECDSA_P384_SHA384_ASN1, key)
                .verify(msg, sig)
                .map_err(|_| SigError::Invalid)
        }
        RSA_PSS => {
            let params = alg
                .parameters
                .as_ref()
                .ok_or_else(|| SigError::Malformed("RSASSA-PSS without parameters".into()))?
                .to_der()
                .map_err(|e| SigError::Malformed(e.to_string()))?;
            let params = RsaPssParams::from_der(&params)
                .map_err(|e| SigError::Malformed(format!("RSASSA-PSS parameters: {e}")))?;
            let pk = rsa_key(key)?;
            let salt = usize::from(params.salt_len);
            // Fast path: aws-lc-rs handles PSS whose salt length equals the digest length
            // (AMD uses SHA-384 with a 48-byte salt); the key bits are a PKCS#1 RSAPublicKey.
            let fast = match (params.hash.oid, salt) {
                (SHA384, 48) => Some(&lc::RSA_PSS_2048_8192_SHA384),
                (SHA256, 32) => Some(&lc::RSA_PSS_2048_8192_SHA256),
                _ => None,
            };
            if let Some(alg) = fast {
                return UnparsedPublicKey::new(alg, key)
                    .verify(msg, sig)
                    .map_err(|_| SigError::Invalid);
            }
            let sig = rsa::pss::Signature::try_from(sig)
                .map_err(|e| SigError::Malformed(format!("RSA signature: {e}")))?;
            match params.hash.oid {
                SHA384 => rsa::pss::VerifyingKey::<Sha384>::new_with_salt_len(pk, salt)
                    .verify(msg, &sig)
                    .map_err(|_| SigError::Invalid),
                SHA256 => rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(pk, salt)
                    .verify(msg, &sig)
                    .map_err(|_| SigError::Invalid),
                other => Err(SigError::Unsupported(format!(
                    "RSASSA-PSS with hash {other}"
                ))),
            }
        }
        RSA_SHA256 | RSA_SHA384 => {
            let pk = rsa_key(key)?;
            let sig = rsa::pkcs1v15::Signature::try_from(sig)
                .map_err(|e| SigError::Malformed(format!("RSA signature: {e}")))?;
            if alg.oid == RSA_SHA256 {
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new(pk).verify(msg, &sig)
            } else {
                rsa::pkcs1v15::VerifyingKey::<Sha384>::new(pk).verify(msg, &sig)
            }
            .map_err(|_| SigError::Invalid)
        }
        other => Err(SigError::Unsupported(other.to_string())),
    }
}

/// Checks `key` is an uncompressed SEC1 point of `len` bytes (65: P-256, 97: P-384);
/// aws-lc-rs validates the point itself when verifying.
fn require_point(key: &[u8], len: usize, message: &str) -> Result<(), SigError> {
    if key.len() == len && key.first() == Some(&0x04) {
        Ok(())
    } else {
        Err(SigError::Unsupported(message.into()))
    }
}

/// Reads an RSA key from SPKI bits (works for both rsaEncryption and RSASSA-PSS key OIDs).
fn rsa_key(bits: &[u8]) -> Result<rsa::RsaPublicKey, SigError> {
    rsa::RsaPublicKey::from_pkcs1_der(bits)
        .map_err(|e| SigError::Malformed(format!("RSA public key: {e}")))
}

/// Verifies a raw (r || s, big-endian) ECDSA P-384/SHA-384 signature over `msg`.
pub(crate) fn verify_p384_raw(
    sec1_key: &[u8],
    msg: &[u8],
    r: &[u8],
    s: &[u8],
) -> Result<(), SigError> {
    require_point(sec1_key, 97, "not a P-384 public key")?;
    if r.len() != 48 || s.len() != 48 {
        return Err(SigError::Malformed("r and s must be 48 bytes each".into()));
    }
    UnparsedPublicKey::new(&lc::ECDSA_P384_SHA384_FIXED, sec1_key)
        .verify(msg, &[r, s].concat())
        .map_err(|_| SigError::Invalid)
}
