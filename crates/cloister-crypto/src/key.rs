//! Key material that zeroizes on drop, never prints, and compares in constant time.

use crate::error::CryptoError;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Fills a new buffer of `N` bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CryptoError::Rng)?;
    Ok(out)
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A 256-bit symmetric key (root, MEK, DEK, sealing key).
#[derive(Clone)]
pub struct SecretKey32(Zeroizing<[u8; 32]>);

impl SecretKey32 {
    /// A fresh random key.
    pub fn random() -> Result<Self, CryptoError> {
        let mut bytes = random_bytes::<32>()?;
        let key = Self(Zeroizing::new(bytes));
        bytes.zeroize();
        Ok(key)
    }

    /// Takes ownership of key bytes (the source array is zeroized).
    pub fn from_array(mut bytes: [u8; 32]) -> Self {
        let key = Self(Zeroizing::new(bytes));
        bytes.zeroize();
        key
    }

    /// Copies a key from a slice, which must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            CryptoError::malformed("key", format!("{} bytes, expected 32", bytes.len()))
        })?;
        Ok(Self::from_array(arr))
    }

    /// The raw key bytes, for handing to a primitive.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for SecretKey32 {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0[..], &other.0[..])
    }
}

impl Eq for SecretKey32 {}

impl std::fmt::Debug for SecretKey32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey32(<redacted>)")
    }
}

/// Secret bytes of any length (a secret value, a decrypted payload); zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes (takes ownership; they are zeroized when this is dropped).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Mutable access for in-place decryption (crate-internal).
    pub(crate) fn as_mut_vec(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = SecretKey32::from_array([0xAB; 32]);
        let s = format!("{k:?}");
        assert!(!s.to_lowercase().contains("ab"), "{s}");
        let b = SecretBytes::new(b"hunter2".to_vec());
        assert!(!format!("{b:?}").contains("hunter2"));
    }

    #[test]
    fn random_keys_differ_and_compare_by_value() {
        let a = SecretKey32::random().expect("rng");
        let b = SecretKey32::random().expect("rng");
        assert_ne!(a, b);
        assert_eq!(a, SecretKey32::from_slice(a.expose()).expect("copy"));
        assert!(SecretKey32::from_slice(&[0; 31]).is_err());
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
