//! The plaintext of one stored key version (encrypted under its namespace's DEK like a
//! secret): the key and whether it may ever be exported. The flag sits inside the AEAD, so a
//! database cannot make a key exportable.
//!
//! Format: `01 ‖ flags ‖ algorithm tag ‖ 32 secret bytes` (flags bit 0: exportable, bit 1:
//! imported). Records written before the flags existed are the bare 33-byte key: generated
//! here, not exportable.

use cloister_crypto::keys::{KeyMaterial, STORED_LEN};
use zeroize::Zeroizing;

/// Format byte of records with flags.
const FORMAT_V1: u8 = 1;
/// Flags bit: the key may be exported.
const EXPORTABLE: u8 = 1;
/// Flags bit: the key was imported (its secret existed outside keyvault).
const IMPORTED: u8 = 2;

/// A key version as keyvault stores it.
pub struct StoredKey {
    /// The key.
    pub key: KeyMaterial,
    /// Whether an owner- and admin-signed export may seal it to a recipient.
    pub exportable: bool,
    /// Whether it was imported rather than generated here.
    pub imported: bool,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("algorithm", &self.key.algorithm())
            .field("exportable", &self.exportable)
            .field("imported", &self.imported)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for StoredKey {
    type Target = KeyMaterial;
    fn deref(&self) -> &KeyMaterial {
        &self.key
    }
}

impl StoredKey {
    /// The record's plaintext.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let stored = self.key.to_stored();
        let mut v = Zeroizing::new(Vec::with_capacity(2 + stored.len()));
        v.push(FORMAT_V1);
        v.push(
            if self.exportable { EXPORTABLE } else { 0 } | if self.imported { IMPORTED } else { 0 },
        );
        v.extend_from_slice(&stored);
        v
    }

    /// Reads a record's plaintext (either format); `None` if it is neither.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes {
            legacy if legacy.len() == STORED_LEN => Some(Self {
                key: KeyMaterial::from_stored(legacy).ok()?,
                exportable: false,
                imported: false,
            }),
            [FORMAT_V1, flags, rest @ ..]
                if rest.len() == STORED_LEN && flags & !(EXPORTABLE | IMPORTED) == 0 =>
            {
                Some(Self {
                    key: KeyMaterial::from_stored(rest).ok()?,
                    exportable: flags & EXPORTABLE != 0,
                    imported: flags & IMPORTED != 0,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_crypto::keys::KeyAlgorithm;

    #[test]
    fn records_round_trip_and_old_records_are_not_exportable() {
        for (exportable, imported) in [(false, false), (true, false), (false, true), (true, true)] {
            let k = StoredKey {
                key: KeyMaterial::generate(KeyAlgorithm::EcdsaP256).unwrap(),
                exportable,
                imported,
            };
            let back = StoredKey::decode(&k.encode()).unwrap();
            assert_eq!((back.exportable, back.imported), (exportable, imported));
            assert_eq!(back.public_key().unwrap(), k.public_key().unwrap());
        }
        let bare = KeyMaterial::generate(KeyAlgorithm::Ed25519)
            .unwrap()
            .to_stored();
        assert!(!StoredKey::decode(&bare).unwrap().exportable);
        let mut unknown_flag = StoredKey {
            key: KeyMaterial::generate(KeyAlgorithm::Ed25519).unwrap(),
            exportable: false,
            imported: false,
        }
        .encode();
        unknown_flag[1] = 4;
        assert!(StoredKey::decode(&unknown_flag).is_none());
        assert!(StoredKey::decode(&[1, 0, 9]).is_none());
    }
}
