//! Identities: an Ed25519 key pair per person or pipeline. The private half lives in a 0600
//! file on the user's machine; keyvault's registry holds the public half and its role.

use std::path::Path;

use cloister_crypto::{SecretKey32, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::AuthorityError;

/// The stable id of an identity: hex of the first 16 bytes of SHA-256 over its public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdentityId(String);

impl IdentityId {
    /// The id of `key`.
    pub fn of(key: &VerifyingKey) -> Self {
        Self(hex::encode(&Sha256::digest(key.0)[..16]))
    }

    /// Parses a 32-hex-digit id.
    pub fn parse(s: &str) -> Result<Self, AuthorityError> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(AuthorityError::Malformed(format!(
                "identity ids are 32 lowercase hex digits, got {s:?}"
            )))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdentityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A signing identity (private key held in memory, zeroized on drop).
pub struct Identity {
    key: SigningKey,
    id: IdentityId,
    label: String,
}

/// The on-disk form: `{"kind": "cloister-identity", "version": 1, "label", "alg", "seed"}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    kind: String,
    version: u32,
    label: String,
    alg: String,
    public_key: String,
    seed: String,
}

impl Drop for IdentityFile {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.seed);
    }
}

const FILE_KIND: &str = "cloister-identity";

impl Identity {
    /// A fresh random identity.
    pub fn generate(label: &str) -> Result<Self, AuthorityError> {
        Ok(Self::from_key(SigningKey::generate()?, label))
    }

    fn from_key(key: SigningKey, label: &str) -> Self {
        let id = IdentityId::of(&key.verifying_key());
        Self {
            key,
            id,
            label: label.to_owned(),
        }
    }

    /// The identity with this 32-byte seed (tests, deterministic fixtures).
    pub fn from_seed(seed: [u8; 32], label: &str) -> Result<Self, AuthorityError> {
        Ok(Self::from_key(
            SigningKey::from_seed(SecretKey32::from_array(seed))?,
            label,
        ))
    }

    /// Its id.
    pub fn id(&self) -> &IdentityId {
        &self.id
    }

    /// Its human label (`alice@laptop`, `ci-deploy`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `msg` (used by [`crate::request::sign`]).
    pub(crate) fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg)
    }

    /// Writes the identity to `path`, created with mode 0600; refuses to overwrite.
    pub fn save(&self, path: &Path) -> Result<(), AuthorityError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |reason: String| AuthorityError::IdentityFile {
            path: path.display().to_string(),
            reason,
        };
        let file = IdentityFile {
            kind: FILE_KIND.into(),
            version: 1,
            label: self.label.clone(),
            alg: "ed25519".into(),
            public_key: self.public_key().to_string(),
            seed: hex::encode(self.key.seed().expose()),
        };
        let text =
            Zeroizing::new(serde_json::to_string_pretty(&file).map_err(|e| err(e.to_string()))?);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(e.to_string()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(|e| err(e.to_string()))
    }

    /// Reads an identity file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, AuthorityError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |reason: String| AuthorityError::IdentityFile {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "mode {:o} lets others read the private key; chmod 600 it",
                meta.permissions().mode() & 0o777
            )));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
        let file: IdentityFile = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if file.kind != FILE_KIND || file.version != 1 || file.alg != "ed25519" {
            return Err(err(format!(
                "not a version-1 ed25519 {FILE_KIND} file (kind {:?}, version {}, alg {:?})",
                file.kind, file.version, file.alg
            )));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(file.seed.as_bytes(), seed.as_mut())
            .map_err(|_| err("seed is not 64 hex digits".into()))?;
        let me = Self::from_seed(*seed, &file.label)?;
        if me.public_key().to_string() != file.public_key {
            return Err(err("public_key does not belong to the seed".into()));
        }
        Ok(me)
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_with_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("me.json");
        let id = Identity::generate("alice").unwrap();
        id.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = Identity::load(&path).unwrap();
        assert_eq!(back.id(), id.id());
        assert_eq!(back.label(), "alice");
        assert!(id.save(&path).is_err(), "never overwrites");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            Identity::load(&path).is_err(),
            "world-readable file refused"
        );
        assert!(!format!("{id:?}").contains(&hex::encode(id.key.seed().expose())));
    }
}
