//! Envelope encryption: keys wrapped by keys (root → MEK → DEK), each wrap bound to its place.

use crate::aad::Aad;
use crate::aead;
use crate::error::CryptoError;
use crate::key::{SecretKey32, random_bytes};

/// Identifier of a key in the hierarchy: 16 random bytes, shown as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 16]);

impl KeyId {
    /// A fresh random id.
    pub fn random() -> Result<Self, CryptoError> {
        Ok(Self(random_bytes::<16>()?))
    }

    /// Parses 32 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, CryptoError> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| CryptoError::malformed("key id", e.to_string()))?;
        Ok(Self(out))
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A key encrypted under a key-encryption key; safe to store anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Which key-encryption key wrapped it.
    pub kek_id: KeyId,
    /// The AES-256-GCM blob.
    pub blob: Vec<u8>,
}

/// AAD for a wrapped key: the ids of both keys plus the caller's context (e.g. namespace, version).
fn wrap_aad(kek_id: &KeyId, key_id: &KeyId, context: &Aad) -> Aad {
    Aad::new("cloister/wrapped-key/v1")
        .bytes(kek_id.as_bytes())
        .bytes(key_id.as_bytes())
        .bytes(context.as_bytes())
}

/// Wraps `key` (named `key_id`) under `kek` (named `kek_id`), bound to `context`.
pub fn wrap(
    kek: &SecretKey32,
    kek_id: KeyId,
    key: &SecretKey32,
    key_id: KeyId,
    context: &Aad,
) -> Result<WrappedKey, CryptoError> {
    let blob = aead::seal(kek, &wrap_aad(&kek_id, &key_id, context), key.expose())?;
    Ok(WrappedKey { kek_id, blob })
}

/// Unwraps a key made by [`wrap`]; any other KEK, id or context fails.
pub fn unwrap(
    kek: &SecretKey32,
    wrapped: &WrappedKey,
    key_id: KeyId,
    context: &Aad,
) -> Result<SecretKey32, CryptoError> {
    let plain = aead::open(
        kek,
        &wrap_aad(&wrapped.kek_id, &key_id, context),
        &wrapped.blob,
    )?;
    SecretKey32::from_slice(plain.expose())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_keys_are_bound_to_kek_key_id_and_context() {
        let root = SecretKey32::random().expect("rng");
        let root_id = KeyId::random().expect("rng");
        let mek = SecretKey32::random().expect("rng");
        let mek_id = KeyId::random().expect("rng");
        let ctx = Aad::new("mek");
        let w = wrap(&root, root_id, &mek, mek_id, &ctx).expect("wrap");
        assert!(
            !w.blob.windows(32).any(|win| win == mek.expose()),
            "plaintext key in blob"
        );
        assert_eq!(unwrap(&root, &w, mek_id, &ctx).expect("unwrap"), mek);
        let other_id = KeyId::random().expect("rng");
        assert_eq!(unwrap(&root, &w, other_id, &ctx), Err(CryptoError::Decrypt));
        assert_eq!(
            unwrap(&root, &w, mek_id, &Aad::new("dek")),
            Err(CryptoError::Decrypt)
        );
        let forged = WrappedKey {
            kek_id: other_id,
            ..w.clone()
        };
        assert_eq!(
            unwrap(&root, &forged, mek_id, &ctx),
            Err(CryptoError::Decrypt)
        );
        let wrong = SecretKey32::random().expect("rng");
        assert_eq!(unwrap(&wrong, &w, mek_id, &ctx), Err(CryptoError::Decrypt));
    }

    #[test]
    fn key_id_hex_round_trip() {
        let id = KeyId::random().expect("rng");
        assert_eq!(KeyId::from_hex(&id.to_hex()).expect("parse"), id);
        assert!(KeyId::from_hex("zz").is_err());
    }
}
