//! Keys keyvault keeps for functions and signs with (docs/CAPABILITIES.md): Ed25519, ECDSA
//! over P-256 and over secp256k1 (recoverable, low-S, as blockchains require) and HMAC-SHA256.
//!
//! Ed25519 and HMAC come from aws-lc-rs; ECDSA from RustCrypto's `p256` and `k256`, which sign
//! a 32-byte digest the caller chose (SHA-256, Keccak-256, or one it computed itself) with
//! RFC 6979 nonces. Private key bytes live in zeroizing buffers and leave this module only as
//! [`KeyMaterial::to_stored`] (for keyvault to encrypt under a DEK).

use aws_lc_rs::digest as lc_digest;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use sha3::Digest as _;
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::key::random_bytes;

/// A key's algorithm; its name is part of the stored form and of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8032): signs the message itself.
    Ed25519,
    /// ECDSA over NIST P-256 (secp256r1).
    EcdsaP256,
    /// ECDSA over secp256k1: low-S signatures with a recovery id.
    EcdsaSecp256k1,
    /// HMAC-SHA256: a symmetric key, so no public half.
    HmacSha256,
}

impl KeyAlgorithm {
    /// Every algorithm.
    pub const ALL: [KeyAlgorithm; 4] = [
        Self::Ed25519,
        Self::EcdsaP256,
        Self::EcdsaSecp256k1,
        Self::HmacSha256,
    ];

    /// The stable name (`ed25519`, `ecdsa-p256`, `ecdsa-secp256k1`, `hmac-sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaSecp256k1 => "ecdsa-secp256k1",
            Self::HmacSha256 => "hmac-sha256",
        }
    }

    /// The algorithm named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    fn tag(self) -> u8 {
        match self {
            Self::Ed25519 => 1,
            Self::EcdsaP256 => 2,
            Self::EcdsaSecp256k1 => 3,
            Self::HmacSha256 => 4,
        }
    }

    fn from_tag(t: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.tag() == t)
    }

    /// Whether the algorithm hashes the message itself (Ed25519, HMAC) rather than signing a
    /// digest the caller picks.
    pub fn takes_message(self) -> bool {
        matches!(self, Self::Ed25519 | Self::HmacSha256)
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub use cloister_types::SignHash;

/// The digest `hash` makes of `message` (for [`SignHash::Prehashed`], the message, which
/// must be 32 bytes).
pub fn digest(hash: SignHash, message: &[u8]) -> Result<[u8; 32], CryptoError> {
    let mut out = [0u8; 32];
    match hash {
        SignHash::Keccak256 => out.copy_from_slice(&sha3::Keccak256::digest(message)),
        SignHash::Prehashed => {
            out = message.try_into().map_err(|_| {
                CryptoError::malformed(
                    "prehashed message",
                    format!("{} bytes, not a 32-byte digest", message.len()),
                )
            })?;
        }
        _ => out.copy_from_slice(lc_digest::digest(&lc_digest::SHA256, message).as_ref()),
    }
    Ok(out)
}

/// A signature, as returned to a function or an API caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySignature {
    /// Ed25519: 64 bytes; ECDSA: `r || s`, 32 bytes each (low-S for secp256k1); HMAC: the
    /// 32-byte tag.
    pub bytes: Vec<u8>,
    /// secp256k1 only: the recovery id (0 or 1) of the public key from `bytes` and the digest.
    pub recovery_id: Option<u8>,
}

/// One key's private material.
pub struct KeyMaterial {
    algorithm: KeyAlgorithm,
    secret: Zeroizing<[u8; 32]>,
    /// The signing key, parsed on first use and kept: an Ed25519 or ECDSA key's public half
    /// takes a scalar multiplication to derive, as much as a signature costs.
    parsed: std::sync::OnceLock<Parsed>,
}

/// A key parsed for signing. The ECDSA keys zeroize themselves when dropped; aws-lc wipes
/// the Ed25519 key's memory as it frees it.
enum Parsed {
    Ed25519(Ed25519KeyPair),
    P256(p256::ecdsa::SigningKey),
    K256(k256::ecdsa::SigningKey),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Length of [`KeyMaterial::to_stored`]: one algorithm byte and 32 secret bytes.
pub const STORED_LEN: usize = 33;

impl KeyMaterial {
    /// A fresh key of `algorithm` from the system's random number generator.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, CryptoError> {
        // Almost every 32 random bytes are a valid scalar; the loop ends at once in practice.
        for _ in 0..16 {
            let k = Self {
                algorithm,
                secret: Zeroizing::new(random_bytes::<32>()?),
                parsed: std::sync::OnceLock::new(),
            };
            if k.check().is_ok() {
                return Ok(k);
            }
        }
        Err(CryptoError::Rng)
    }

    /// The key whose secret bytes are `secret` (a seed, scalar or HMAC key of 32 bytes).
    pub fn from_secret(algorithm: KeyAlgorithm, secret: &[u8]) -> Result<Self, CryptoError> {
        if secret.len() != 32 {
            return Err(CryptoError::malformed("private key", "not 32 bytes"));
        }
        // Copied straight into the zeroizing buffer: no other copy is left on the stack.
        let mut k = Self {
            algorithm,
            secret: Zeroizing::new([0u8; 32]),
            parsed: std::sync::OnceLock::new(),
        };
        k.secret.copy_from_slice(secret);
        k.check()?;
        Ok(k)
    }

    fn check(&self) -> Result<(), CryptoError> {
        let bad = |_| CryptoError::malformed("private key", "not a valid scalar for its curve");
        match self.algorithm {
            KeyAlgorithm::EcdsaP256 => p256::ecdsa::SigningKey::from_slice(&*self.secret)
                .map(drop)
                .map_err(bad),
            KeyAlgorithm::EcdsaSecp256k1 => k256::ecdsa::SigningKey::from_slice(&*self.secret)
                .map(drop)
                .map_err(bad),
            KeyAlgorithm::Ed25519 | KeyAlgorithm::HmacSha256 => Ok(()),
        }
    }

    /// The stored form: the algorithm's tag, then the 32 secret bytes (for keyvault to
    /// encrypt; zeroized when dropped).
    pub fn to_stored(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(STORED_LEN));
        v.push(self.algorithm.tag());
        v.extend_from_slice(&*self.secret);
        v
    }

    /// The key from its stored form.
    pub fn from_stored(stored: &[u8]) -> Result<Self, CryptoError> {
        let (&tag, secret) = stored
            .split_first()
            .filter(|(_, rest)| rest.len() == 32)
            .ok_or_else(|| CryptoError::malformed("stored key", "wrong length"))?;
        let algorithm = KeyAlgorithm::from_tag(tag)
            .ok_or_else(|| CryptoError::malformed("stored key", "unknown algorithm"))?;
        Self::from_secret(algorithm, secret)
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public key: Ed25519 32 raw bytes; ECDSA the uncompressed SEC1 point (65 bytes,
    /// `04 || x || y`); `None` for HMAC, which has none.
    pub fn public_key(&self) -> Result<Option<Vec<u8>>, CryptoError> {
        Ok(match self.algorithm {
            KeyAlgorithm::Ed25519 => Some(self.ed25519()?.public_key().as_ref().to_vec()),
            KeyAlgorithm::EcdsaP256 => Some(
                self.p256()?
                    .verifying_key()
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec(),
            ),
            KeyAlgorithm::EcdsaSecp256k1 => Some(
                self.k256()?
                    .verifying_key()
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec(),
            ),
            KeyAlgorithm::HmacSha256 => None,
        })
    }

    /// Signs `message`: Ed25519 and HMAC over the message itself (`hash` must be the
    /// default), ECDSA over `hash`'s digest of it.
    pub fn sign(&self, message: &[u8], hash: SignHash) -> Result<KeySignature, CryptoError> {
        if self.algorithm.takes_message() && hash != SignHash::Sha256 {
            return Err(CryptoError::malformed(
                "hash",
                format!(
                    "{} signs the message itself; `{}` applies to ECDSA keys only",
                    self.algorithm,
                    hash.as_str()
                ),
            ));
        }
        let plain = |bytes: Vec<u8>| KeySignature {
            bytes,
            recovery_id: None,
        };
        Ok(match self.algorithm {
            KeyAlgorithm::Ed25519 => plain(self.ed25519()?.sign(message).as_ref().to_vec()),
            KeyAlgorithm::HmacSha256 => {
                let key = hmac::Key::new(hmac::HMAC_SHA256, &*self.secret);
                plain(hmac::sign(&key, message).as_ref().to_vec())
            }
            KeyAlgorithm::EcdsaP256 => {
                use p256::ecdsa::signature::hazmat::PrehashSigner;
                let digest = digest(hash, message)?;
                let sig: p256::ecdsa::Signature = self
                    .p256()?
                    .sign_prehash(&digest)
                    .map_err(|_| CryptoError::malformed("digest", "cannot be signed"))?;
                plain(sig.to_bytes().to_vec())
            }
            KeyAlgorithm::EcdsaSecp256k1 => {
                let digest = digest(hash, message)?;
                let (sig, recovery) = self.k256()?.sign_prehash_recoverable(&digest);
                KeySignature {
                    bytes: sig.to_bytes().to_vec(),
                    recovery_id: Some(u8::from(recovery)),
                }
            }
        })
    }

    /// Whether `signature` is this key's over `message` with `hash` (as [`KeyMaterial::sign`]
    /// makes them): the public key checks it for Ed25519 and ECDSA, a constant-time
    /// comparison of tags for HMAC. A signature of the wrong length or shape is `false`.
    pub fn verify(
        &self,
        message: &[u8],
        hash: SignHash,
        signature: &[u8],
    ) -> Result<bool, CryptoError> {
        if self.algorithm.takes_message() && hash != SignHash::Sha256 {
            return Err(CryptoError::malformed(
                "hash",
                format!(
                    "{} signs the message itself; `{}` applies to ECDSA keys only",
                    self.algorithm,
                    hash.as_str()
                ),
            ));
        }
        Ok(match self.algorithm {
            KeyAlgorithm::Ed25519 => {
                let kp = self.ed25519()?;
                aws_lc_rs::signature::UnparsedPublicKey::new(
                    &aws_lc_rs::signature::ED25519,
                    kp.public_key().as_ref(),
                )
                .verify(message, signature)
                .is_ok()
            }
            KeyAlgorithm::HmacSha256 => {
                let key = hmac::Key::new(hmac::HMAC_SHA256, &*self.secret);
                hmac::verify(&key, message, signature).is_ok()
            }
            KeyAlgorithm::EcdsaP256 => {
                use p256::ecdsa::signature::hazmat::PrehashVerifier;
                let digest = digest(hash, message)?;
                p256::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| {
                    self.p256()
                        .is_ok_and(|k| k.verifying_key().verify_prehash(&digest, &sig).is_ok())
                })
            }
            KeyAlgorithm::EcdsaSecp256k1 => {
                use k256::ecdsa::signature::hazmat::PrehashVerifier;
                let digest = digest(hash, message)?;
                // Only the low-S form this module makes counts (a high-S twin is malleated).
                k256::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| {
                    sig.normalize_s() == sig
                        && self
                            .k256()
                            .is_ok_and(|k| k.verifying_key().verify_prehash(&digest, &sig).is_ok())
                })
            }
        })
    }

    /// The parsed key, built on first use.
    fn parsed(&self) -> Result<&Parsed, CryptoError> {
        if let Some(p) = self.parsed.get() {
            return Ok(p);
        }
        let p = match self.algorithm {
            KeyAlgorithm::Ed25519 => Parsed::Ed25519(
                Ed25519KeyPair::from_seed_unchecked(&*self.secret)
                    .map_err(|_| CryptoError::malformed("Ed25519 seed", "rejected"))?,
            ),
            KeyAlgorithm::EcdsaP256 => Parsed::P256(
                p256::ecdsa::SigningKey::from_slice(&*self.secret)
                    .map_err(|_| CryptoError::malformed("P-256 key", "invalid scalar"))?,
            ),
            KeyAlgorithm::EcdsaSecp256k1 => Parsed::K256(
                k256::ecdsa::SigningKey::from_slice(&*self.secret)
                    .map_err(|_| CryptoError::malformed("secp256k1 key", "invalid scalar"))?,
            ),
            KeyAlgorithm::HmacSha256 => {
                return Err(CryptoError::malformed(
                    "HMAC key",
                    "has no signing key pair",
                ));
            }
        };
        Ok(self.parsed.get_or_init(|| p))
    }

    fn ed25519(&self) -> Result<&Ed25519KeyPair, CryptoError> {
        match self.parsed()? {
            Parsed::Ed25519(k) => Ok(k),
            _ => Err(CryptoError::malformed("key", "not an Ed25519 key")),
        }
    }

    fn p256(&self) -> Result<&p256::ecdsa::SigningKey, CryptoError> {
        match self.parsed()? {
            Parsed::P256(k) => Ok(k),
            _ => Err(CryptoError::malformed("key", "not a P-256 key")),
        }
    }

    fn k256(&self) -> Result<&k256::ecdsa::SigningKey, CryptoError> {
        match self.parsed()? {
            Parsed::K256(k) => Ok(k),
            _ => Err(CryptoError::malformed("key", "not a secp256k1 key")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_through_its_stored_form_and_signs_deterministically() {
        for alg in KeyAlgorithm::ALL {
            let k = KeyMaterial::generate(alg).unwrap();
            let stored = k.to_stored();
            assert_eq!(stored.len(), STORED_LEN);
            let back = KeyMaterial::from_stored(&stored).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.public_key().unwrap(), k.public_key().unwrap());
            let a = k.sign(b"msg", SignHash::Sha256).unwrap();
            let b = back.sign(b"msg", SignHash::Sha256).unwrap();
            assert_eq!(a, b, "{alg}: RFC 6979 / Ed25519 / HMAC are deterministic");
            assert_eq!(KeyAlgorithm::parse(alg.as_str()), Some(alg));
        }
        assert!(KeyMaterial::from_stored(&[9; STORED_LEN]).is_err());
        assert!(KeyMaterial::from_stored(&[1; 10]).is_err());
    }

    #[test]
    fn hmac_matches_an_independent_computation_and_has_no_public_key() {
        // Computed with Python's hmac module:
        // hmac.new(bytes(range(32)), b"what do ya want for nothing?", sha256).hexdigest()
        let key: Vec<u8> = (0u8..32).collect();
        let k = KeyMaterial::from_secret(KeyAlgorithm::HmacSha256, &key).unwrap();
        let tag = k
            .sign(b"what do ya want for nothing?", SignHash::Sha256)
            .unwrap();
        assert_eq!(
            hex::encode(tag.bytes),
            "099805f4ac310786968565c098db515cc50862b420ae31e20238312344bed36a"
        );
        assert_eq!(k.public_key().unwrap(), None);
    }

    #[test]
    fn secp256k1_signatures_are_low_s_and_recover_the_public_key() {
        use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
        let k = KeyMaterial::generate(KeyAlgorithm::EcdsaSecp256k1).unwrap();
        let public = k.public_key().unwrap().unwrap();
        for i in 0..32u8 {
            let msg = [i; 40];
            let s = k.sign(&msg, SignHash::Keccak256).unwrap();
            let sig = Signature::from_slice(&s.bytes).unwrap();
            assert!(sig.normalize_s() == sig, "low-S");
            let digest = digest(SignHash::Keccak256, &msg).unwrap();
            let rid = RecoveryId::try_from(s.recovery_id.unwrap()).unwrap();
            let vk = VerifyingKey::recover_from_prehash(&digest, &sig, rid).unwrap();
            assert_eq!(vk.to_sec1_point(false).as_bytes(), public.as_slice());
        }
    }

    #[test]
    fn verify_accepts_exactly_the_signatures_the_key_makes() {
        for alg in KeyAlgorithm::ALL {
            let k = KeyMaterial::generate(alg).unwrap();
            let other = KeyMaterial::generate(alg).unwrap();
            let hash = if alg.takes_message() {
                SignHash::Sha256
            } else {
                SignHash::Keccak256
            };
            let s = k.sign(b"pay 5", hash).unwrap().bytes;
            assert!(k.verify(b"pay 5", hash, &s).unwrap(), "{alg}");
            assert!(
                !k.verify(b"pay 6", hash, &s).unwrap(),
                "{alg}: other message"
            );
            assert!(
                !other.verify(b"pay 5", hash, &s).unwrap(),
                "{alg}: other key"
            );
            let mut flipped = s.clone();
            flipped[5] ^= 1;
            assert!(
                !k.verify(b"pay 5", hash, &flipped).unwrap(),
                "{alg}: flipped"
            );
            assert!(!k.verify(b"pay 5", hash, &s[..20]).unwrap(), "{alg}: short");
            if !alg.takes_message() {
                assert!(
                    !k.verify(b"pay 5", SignHash::Sha256, &s).unwrap(),
                    "{alg}: hash"
                );
            }
        }
        // secp256k1: the high-S twin of a valid signature is refused.
        let k = KeyMaterial::generate(KeyAlgorithm::EcdsaSecp256k1).unwrap();
        let s = k.sign(b"tx", SignHash::Sha256).unwrap().bytes;
        let sig = k256::ecdsa::Signature::from_slice(&s).unwrap();
        let (r, low_s) = sig.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*low_s).unwrap();
        assert!(!k.verify(b"tx", SignHash::Sha256, &high.to_bytes()).unwrap());
    }

    #[test]
    fn a_prehashed_message_must_be_32_bytes_and_only_ecdsa_takes_a_hash() {
        let p = KeyMaterial::generate(KeyAlgorithm::EcdsaP256).unwrap();
        assert!(p.sign(&[1; 31], SignHash::Prehashed).is_err());
        assert!(p.sign(&[1; 32], SignHash::Prehashed).is_ok());
        let e = KeyMaterial::generate(KeyAlgorithm::Ed25519).unwrap();
        assert!(e.sign(b"m", SignHash::Keccak256).is_err());
        // Keccak-256 is Ethereum's, not SHA3-256: the empty message's well-known digest.
        assert_eq!(
            hex::encode(digest(SignHash::Keccak256, b"").unwrap()),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }
}
