//! Ephemeral X25519 key agreement (aws-lc-rs), with HKDF-SHA256 over the shared secret: how
//! the gateway and an attested executor derive the key that authenticates their link.

use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};

use crate::error::CryptoError;
use crate::key::SecretKey32;

/// One side's ephemeral key pair; used once.
pub struct EphemeralDh {
    key: EphemeralPrivateKey,
    public: [u8; 32],
}

impl std::fmt::Debug for EphemeralDh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralDh")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

impl EphemeralDh {
    /// A fresh key pair.
    pub fn generate() -> Result<Self, CryptoError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| CryptoError::Rng)?;
        let pk = key.compute_public_key().map_err(|_| CryptoError::Rng)?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pk.as_ref());
        Ok(Self { key, public })
    }

    /// The public half.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Agrees with `peer` and derives 32 bytes with HKDF-SHA256 (`salt`, `info`).
    pub fn agree(self, peer: &[u8], salt: &[u8], info: &[u8]) -> Result<SecretKey32, CryptoError> {
        if peer.len() != 32 {
            return Err(CryptoError::malformed("X25519 public key", "not 32 bytes"));
        }
        agreement::agree_ephemeral(
            self.key,
            UnparsedPublicKey::new(&X25519, peer),
            CryptoError::malformed("X25519 public key", "agreement failed"),
            |shared| crate::kdf::hkdf_sha256(shared, salt, info),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_the_same_key_and_a_third_does_not() {
        let (a, b, c) = (
            EphemeralDh::generate().unwrap(),
            EphemeralDh::generate().unwrap(),
            EphemeralDh::generate().unwrap(),
        );
        let (pa, pb) = (a.public(), b.public());
        let ka = a.agree(&pb, b"salt", b"info").unwrap();
        let kb = b.agree(&pa, b"salt", b"info").unwrap();
        assert_eq!(ka.expose(), kb.expose());
        let kc = c.agree(&pb, b"salt", b"info").unwrap();
        assert_ne!(kc.expose(), ka.expose());
        assert!(
            EphemeralDh::generate()
                .unwrap()
                .agree(&[1, 2], b"", b"")
                .is_err()
        );
    }
}
