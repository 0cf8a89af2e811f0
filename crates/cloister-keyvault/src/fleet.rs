//! Invocation (fleet) keys: HPKE key pairs clients seal invocations to.
//!
//! One key per rotation epoch, derived from the root (so every keyvault of a platform holds
//! the same keys and nothing needs storing), valid for its epoch plus an overlap window so a
//! client holding the previous key can still seal while it fetches the new one. Knowing one
//! epoch's key says nothing about another's (HKDF).

use cloister_crypto::{HpkeKeyPair, HpkePublicKey};
use sha2::{Digest, Sha256};

/// Length of a rotation epoch.
pub const ROTATION_SECS: u64 = 24 * 3600;
/// How long a key stays valid after its epoch ended.
pub const OVERLAP_SECS: u64 = 3600;

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

/// The epochs whose keys are valid at `now`, newest first.
pub fn epochs_valid_at(now: u64) -> Vec<u64> {
    let current = now / ROTATION_SECS;
    let mut v = vec![current];
    if current > 0 && now < current * ROTATION_SECS + OVERLAP_SECS {
        v.push(current - 1);
    }
    v
}

/// The validity window of `epoch`'s key.
pub fn validity(epoch: u64) -> (u64, u64) {
    let start = epoch.saturating_mul(ROTATION_SECS);
    (
        start,
        start
            .saturating_add(ROTATION_SECS)
            .saturating_add(OVERLAP_SECS),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_at_a_time_except_in_the_overlap_after_a_rotation() {
        let e = 20_000;
        let start = e * ROTATION_SECS;
        assert_eq!(epochs_valid_at(start), vec![e, e - 1]);
        assert_eq!(epochs_valid_at(start + OVERLAP_SECS - 1), vec![e, e - 1]);
        assert_eq!(epochs_valid_at(start + OVERLAP_SECS), vec![e]);
        assert_eq!(epochs_valid_at(start + ROTATION_SECS - 1), vec![e]);
        // Every key listed is valid at that time by its own window.
        for t in [start, start + OVERLAP_SECS - 1, start + ROTATION_SECS - 1] {
            for ep in epochs_valid_at(t) {
                let (nb, na) = validity(ep);
                assert!(nb <= t && t < na, "epoch {ep} at {t}");
            }
        }
        assert_eq!(epochs_valid_at(5), vec![0]);
    }
}
