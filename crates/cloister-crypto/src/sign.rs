//! Ed25519 signatures (audit checkpoints, receipts, evidence of the simulated TEE).

use crate::error::CryptoError;
use crate::key::SecretKey32;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// A signing key; its 32-byte seed is kept zeroizing.
pub struct SigningKey {
    seed: SecretKey32,
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        Self::from_seed(SecretKey32::random()?)
    }

    /// The key for a 32-byte seed (e.g. one unsealed from storage).
    pub fn from_seed(seed: SecretKey32) -> Result<Self, CryptoError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.expose())
            .map_err(|_| CryptoError::malformed("Ed25519 seed", "rejected"))?;
        Ok(Self { seed, pair })
    }

    /// The seed, for sealing the key to storage.
    pub fn seed(&self) -> &SecretKey32 {
        &self.seed
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(self.pair.public_key().as_ref());
        VerifyingKey(pk)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", self.verifying_key())
    }
}

/// An Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey(pub [u8; 32]);

impl VerifyingKey {
    /// Parses 32 raw bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            CryptoError::malformed("Ed25519 public key", format!("{} bytes", bytes.len()))
        })?;
        Ok(Self(arr))
    }

    /// Checks `sig` over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl std::fmt::Display for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_1() {
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .expect("hex");
        let key =
            SigningKey::from_seed(SecretKey32::from_slice(&seed).expect("seed")).expect("key");
        assert_eq!(
            key.verifying_key().to_string(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = key.sign(b"");
        assert_eq!(
            hex::encode(sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        key.verifying_key().verify(b"", &sig).expect("verifies");
    }

    #[test]
    fn tampering_is_caught() {
        let key = SigningKey::generate().expect("key");
        let sig = key.sign(b"checkpoint 7");
        assert_eq!(
            key.verifying_key().verify(b"checkpoint 8", &sig),
            Err(CryptoError::BadSignature)
        );
        let mut bad = sig;
        bad[10] ^= 1;
        assert_eq!(
            key.verifying_key().verify(b"checkpoint 7", &bad),
            Err(CryptoError::BadSignature)
        );
        let other = SigningKey::generate().expect("key");
        assert_eq!(
            other.verifying_key().verify(b"checkpoint 7", &sig),
            Err(CryptoError::BadSignature)
        );
        assert!(!format!("{key:?}").contains(&hex::encode(key.seed().expose())));
    }
}
