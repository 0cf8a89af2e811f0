//! keyvault's signed statement "the chain had this hash at this sequence number".

use cloister_crypto::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

const DOMAIN: &[u8] = b"cloister/audit-checkpoint/v1";

/// A signed checkpoint, as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Sequence number of the last entry covered.
    pub seq: u64,
    /// Hex hash of that entry.
    pub hash: String,
    /// RFC 3339 time of signing.
    pub at: String,
    /// Hex Ed25519 public key of the signer.
    pub key: String,
    /// Hex Ed25519 signature.
    pub signature: String,
}

fn message(seq: u64, hash: &str, at: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 8 + hash.len() + at.len() + 16);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&(hash.len() as u64).to_be_bytes());
    m.extend_from_slice(hash.as_bytes());
    m.extend_from_slice(&(at.len() as u64).to_be_bytes());
    m.extend_from_slice(at.as_bytes());
    m
}

impl Checkpoint {
    /// Signs (seq, hash, at) with keyvault's audit key.
    pub fn sign(key: &SigningKey, seq: u64, hash: &str, at: String) -> Self {
        let sig = key.sign(&message(seq, hash, &at));
        Self {
            seq,
            hash: hash.to_owned(),
            at,
            key: key.verifying_key().to_string(),
            signature: hex::encode(sig),
        }
    }

    /// Whether the signature is valid for `key` (the key from keyvault's attested bundle).
    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        let Ok(sig) = hex::decode(&self.signature) else {
            return false;
        };
        key.verify(&message(self.seq, &self.hash, &self.at), &sig)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_every_field() {
        let k = SigningKey::generate().unwrap();
        let c = Checkpoint::sign(&k, 5, &"ab".repeat(32), "2026-01-01T00:00:00.000Z".into());
        assert!(c.is_signed_by(&k.verifying_key()));
        let other = SigningKey::generate().unwrap();
        assert!(!c.is_signed_by(&other.verifying_key()));
        let mut d = c.clone();
        d.seq = 4;
        assert!(!d.is_signed_by(&k.verifying_key()));
        let mut d = c.clone();
        d.hash = "cd".repeat(32);
        assert!(!d.is_signed_by(&k.verifying_key()));
        let mut d = c;
        d.at = "2027-01-01T00:00:00.000Z".into();
        assert!(!d.is_signed_by(&k.verifying_key()));
    }
}
