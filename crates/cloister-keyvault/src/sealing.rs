//! The root key at rest: sealed to the binary's measurement, recoverable with a recovery key.

use crate::error::KeyvaultError;
use cloister_crypto::{Aad, KeyId, SecretKey32, aead};

/// Length of a measurement (SHA-384).
pub const MEASUREMENT_LEN: usize = 48;

/// The root key sealed for one measurement; safe to store on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRoot {
    /// Identifier of the root key (bound into every wrap under it).
    pub root_id: KeyId,
    /// Measurement whose sealing key seals it.
    pub measurement: [u8; MEASUREMENT_LEN],
    /// The sealed root key.
    pub blob: Vec<u8>,
}

fn seal_aad(root_id: &KeyId, measurement: &[u8; MEASUREMENT_LEN]) -> Aad {
    Aad::new("cloister/sealed-root/v1")
        .bytes(root_id.as_bytes())
        .bytes(measurement)
}

fn recovery_aad(root_id: &KeyId) -> Aad {
    Aad::new("cloister/recovery-root/v1").bytes(root_id.as_bytes())
}

impl SealedRoot {
    /// Seals `root` with `sealing_key` (derived by the TEE from `measurement`).
    pub fn seal(
        root_id: KeyId,
        root: &SecretKey32,
        measurement: [u8; MEASUREMENT_LEN],
        sealing_key: &SecretKey32,
    ) -> Result<Self, KeyvaultError> {
        let blob = aead::seal(
            sealing_key,
            &seal_aad(&root_id, &measurement),
            root.expose(),
        )?;
        Ok(Self {
            root_id,
            measurement,
            blob,
        })
    }

    /// Unseals with this binary's sealing key; a different measurement cannot.
    pub fn unseal(
        &self,
        running: &[u8; MEASUREMENT_LEN],
        sealing_key: &SecretKey32,
    ) -> Result<SecretKey32, KeyvaultError> {
        let fail = || KeyvaultError::Unseal {
            sealed_for: hex::encode(self.measurement),
            running: hex::encode(running),
        };
        if &self.measurement != running {
            return Err(fail());
        }
        let plain = aead::open(
            sealing_key,
            &seal_aad(&self.root_id, &self.measurement),
            &self.blob,
        )
        .map_err(|_| fail())?;
        Ok(SecretKey32::from_slice(plain.expose())?)
    }
}

/// The operator's recovery key: printed once at initialisation, never stored by keyvault.
pub struct RecoveryKey(SecretKey32);

/// Text prefix of a recovery key, so it is recognisable (and greppable by secret scanners).
const RECOVERY_PREFIX: &str = "cloister-recovery-";

impl RecoveryKey {
    /// A fresh random recovery key.
    pub fn generate() -> Result<Self, KeyvaultError> {
        Ok(Self(SecretKey32::random()?))
    }

    /// Parses `cloister-recovery-<64 hex>`.
    pub fn parse(text: &str) -> Result<Self, KeyvaultError> {
        let invalid = |reason: &str| KeyvaultError::Invalid {
            what: "recovery key",
            reason: reason.into(),
        };
        let hex_part = text
            .trim()
            .strip_prefix(RECOVERY_PREFIX)
            .ok_or_else(|| invalid("must start with cloister-recovery-"))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|_| invalid("expected 64 hex digits"))?;
        Ok(Self(SecretKey32::from_array(bytes)))
    }

    /// The text form, to show the operator exactly once.
    pub fn reveal(&self) -> String {
        format!("{RECOVERY_PREFIX}{}", hex::encode(self.0.expose()))
    }

    /// Encrypts `root` so this recovery key can restore it under a new measurement.
    pub fn wrap_root(&self, root_id: KeyId, root: &SecretKey32) -> Result<Vec<u8>, KeyvaultError> {
        Ok(aead::seal(&self.0, &recovery_aad(&root_id), root.expose())?)
    }

    /// Restores the root from a blob made by [`RecoveryKey::wrap_root`].
    pub fn unwrap_root(&self, root_id: KeyId, blob: &[u8]) -> Result<SecretKey32, KeyvaultError> {
        let plain = aead::open(&self.0, &recovery_aad(&root_id), blob)
            .map_err(|_| KeyvaultError::WrongRecoveryKey)?;
        Ok(SecretKey32::from_slice(plain.expose())?)
    }
}

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: [u8; 48] = [1; 48];
    const M2: [u8; 48] = [2; 48];

    fn key() -> SecretKey32 {
        SecretKey32::random().expect("rng")
    }

    #[test]
    fn a_different_measurement_cannot_unseal_but_recovery_migrates() {
        let (root, root_id) = (key(), KeyId::random().expect("rng"));
        let (seal1, seal2) = (key(), key());
        let sealed = SealedRoot::seal(root_id, &root, M1, &seal1).expect("seal");
        assert_eq!(sealed.unseal(&M1, &seal1).expect("same binary"), root);
        assert!(matches!(
            sealed.unseal(&M2, &seal2),
            Err(KeyvaultError::Unseal { .. })
        ));
        // Even claiming the old measurement does not help without its sealing key.
        assert!(matches!(
            sealed.unseal(&M1, &seal2),
            Err(KeyvaultError::Unseal { .. })
        ));

        let recovery = RecoveryKey::generate().expect("rng");
        let blob = recovery.wrap_root(root_id, &root).expect("wrap");
        let again = RecoveryKey::parse(&recovery.reveal()).expect("parse");
        let restored = again.unwrap_root(root_id, &blob).expect("recover");
        let migrated = SealedRoot::seal(root_id, &restored, M2, &seal2).expect("reseal");
        assert_eq!(migrated.unseal(&M2, &seal2).expect("new binary"), root);

        let wrong = RecoveryKey::generate().expect("rng");
        assert_eq!(
            wrong.unwrap_root(root_id, &blob).err(),
            Some(KeyvaultError::WrongRecoveryKey)
        );
        assert!(RecoveryKey::parse("cloister-recovery-zz").is_err());
        assert!(RecoveryKey::parse(&hex::encode([0u8; 32])).is_err());
        assert!(!format!("{recovery:?}").contains(&recovery.reveal()[18..]));
    }
}
