//! Invocation (fleet) keys: HPKE key pairs clients seal invocations to.
//!
//! One key per rotation epoch, derived from the root (so every keyvault of a platform holds
//! the same keys and nothing needs storing), valid for its epoch plus an overlap window so a
//! client holding the previous key can still seal while it fetches the new one. Knowing one
//! epoch's key says nothing about another's (HKDF).
//!
//! Keys are also derived from a *generation*, the executor policy's version: when an admin
//! removes a build from the policy, every fleet key is replaced at once, so the keys that
//! build holds (even ones a hostile host's clock let it fetch ahead of their epoch) open
//! nothing sealed to the new keys. Clients pick the new keys up with the next bundle; one
//! that keeps an old bundle is bounded by its maximum bundle age (`cloister trust`).

use cloister_crypto::{HpkeKeyPair, HpkePublicKey};
use sha2::{Digest, Sha256};

pub use cloister_types::fleet::{OVERLAP_SECS, ROTATION_SECS, epochs_valid_at, validity};

/// A fleet key's public half and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPublic {
    /// First 8 bytes of the SHA-256 of the public key.
    pub key_id: [u8; 8],
    /// Rotation epoch.
    pub epoch: u64,
    /// The public key.
    pub public: HpkePublicKey,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub not_after: u64,
}

/// The public half of `pair`, as `epoch`'s fleet key.
pub fn public_of(pair: &HpkeKeyPair, epoch: u64) -> FleetPublic {
    let public = pair.public();
    let digest = Sha256::digest(public.0);
    let mut key_id = [0u8; 8];
    key_id.copy_from_slice(&digest[..8]);
    let (not_before, not_after) = validity(epoch);
    FleetPublic {
        key_id,
        epoch,
        public,
        not_before,
        not_after,
    }
}
