//! Cryptography for Cloister's trusted roles: zeroizing keys, AES-256-GCM envelopes bound to
//! where a ciphertext lives (AAD), the root → MEK → DEK hierarchy, HPKE (RFC 9180) sealing to
//! an attested key, Ed25519 signatures and HKDF.
//!
//! Every primitive comes from aws-lc-rs or the `hpke` crate (whose key schedule runs over
//! aws-lc's X25519: [`x25519_kem`]); this crate only fixes the choices (one suite each) and the
//! byte layouts, so callers cannot pick a weak option.

pub mod aad;
pub mod aead;
pub mod dh;
pub mod envelope;
pub mod error;
pub mod hpke_seal;
pub mod kdf;
pub mod key;
pub mod keys;
pub mod mac;
pub mod sign;
pub mod x25519_kem;

pub use aad::Aad;
pub use envelope::{KeyId, WrappedKey};
pub use error::CryptoError;
pub use hpke_seal::{HpkeKeyPair, HpkePublicKey};
pub use key::{SecretBytes, SecretKey32, ct_eq, random_bytes};
pub use mac::MacKey;
pub use sign::{SigningKey, VerifyingKey};
