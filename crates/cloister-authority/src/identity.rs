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

/// The on-disk form: `{"kind": "cloister-identity", "version", "label", "alg", "public_key"}`
/// plus either `seed` (version 1, plain hex) or `protected` (version 2: the seed sealed
/// under a key derived from a passphrase with Argon2id).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    kind: String,
    version: u32,
    label: String,
    alg: String,
    public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protected: Option<ProtectedSeed>,
}

/// A seed sealed (AES-256-GCM) under an Argon2id key of a passphrase.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtectedSeed {
    kdf: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
    sealed: String,
}

impl Drop for IdentityFile {
    fn drop(&mut self) {
        if let Some(s) = &mut self.seed {
            zeroize::Zeroize::zeroize(s);
        }
    }
}

const FILE_KIND: &str = "cloister-identity";

/// Argon2id cost of new passphrase-protected files (OWASP's 19 MiB, 2 passes, 1 lane).
const ARGON2_M_KIB: u32 = 19 * 1024;
const ARGON2_T: u32 = 2;
const ARGON2_P: u32 = 1;
/// Largest Argon2 memory cost accepted from a file (a hostile file must not exhaust memory).
const ARGON2_MAX_M_KIB: u32 = 1024 * 1024;

fn passphrase_key(
    passphrase: &[u8],
    salt: &[u8],
    m_kib: u32,
    t: u32,
    p: u32,
) -> Result<SecretKey32, String> {
    if m_kib > ARGON2_MAX_M_KIB || t > 64 || p > 16 {
        return Err("Argon2 parameters are out of range".into());
    }
    let params = argon2::Params::new(m_kib, t, p, Some(32)).map_err(|e| e.to_string())?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase, salt, out.as_mut())
        .map_err(|e| e.to_string())?;
    Ok(SecretKey32::from_array(*out))
}

fn seed_aad(public_key: &str) -> cloister_crypto::aad::Aad {
    cloister_crypto::aad::Aad::new("cloister-identity/v2").str(public_key)
}

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

    /// The proof this (new) key gives when `old` rotates to it on `platform`
    /// ([`crate::ops::rotation_proof_message`]), hex.
    pub fn rotation_proof(&self, old: &IdentityId, platform: &str) -> String {
        hex::encode(self.sign_raw(&crate::ops::rotation_proof_message(old, platform)))
    }

    /// Signs `msg` (used by [`crate::request::sign`]).
    pub(crate) fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg)
    }

    /// Writes the identity to `path`, created with mode 0600; refuses to overwrite.
    pub fn save(&self, path: &Path) -> Result<(), AuthorityError> {
        self.write_file(path, None)
    }

    /// Like [`Identity::save`], with the private key sealed under `passphrase` (Argon2id,
    /// then AES-256-GCM); loading it needs the passphrase.
    pub fn save_with_passphrase(
        &self,
        path: &Path,
        passphrase: &str,
    ) -> Result<(), AuthorityError> {
        if passphrase.is_empty() {
            return Err(AuthorityError::IdentityFile {
                path: path.display().to_string(),
                reason: "the passphrase is empty".into(),
            });
        }
        self.write_file(path, Some(passphrase))
    }

    fn write_file(&self, path: &Path, passphrase: Option<&str>) -> Result<(), AuthorityError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |reason: String| AuthorityError::IdentityFile {
            path: path.display().to_string(),
            reason,
        };
        let public_key = self.public_key().to_string();
        let (version, seed, protected) = match passphrase {
            None => (1, Some(hex::encode(self.key.seed().expose())), None),
            Some(pass) => {
                let salt: [u8; 16] = cloister_crypto::random_bytes()?;
                let key = passphrase_key(pass.as_bytes(), &salt, ARGON2_M_KIB, ARGON2_T, ARGON2_P)
                    .map_err(err)?;
                let sealed = cloister_crypto::aead::seal(
                    &key,
                    &seed_aad(&public_key),
                    self.key.seed().expose(),
                )?;
                let p = ProtectedSeed {
                    kdf: "argon2id".into(),
                    m_kib: ARGON2_M_KIB,
                    t: ARGON2_T,
                    p: ARGON2_P,
                    salt: hex::encode(salt),
                    sealed: hex::encode(sealed),
                };
                (2, None, Some(p))
            }
        };
        let file = IdentityFile {
            kind: FILE_KIND.into(),
            version,
            label: self.label.clone(),
            alg: "ed25519".into(),
            public_key,
            seed,
            protected,
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

    /// Whether the file at `path` is protected by a passphrase.
    pub fn is_protected(path: &Path) -> bool {
        std::fs::read_to_string(path)
            .ok()
            .map(Zeroizing::new)
            .and_then(|t| serde_json::from_str::<IdentityFile>(&t).ok())
            .is_some_and(|f| f.protected.is_some())
    }

    /// Reads an unprotected identity file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, AuthorityError> {
        Self::load_with(path, &mut || Err("it is protected by a passphrase".into()))
    }

    /// Reads an identity file, asking `passphrase` for the passphrase if it is protected.
    pub fn load_with(
        path: &Path,
        passphrase: &mut dyn FnMut() -> Result<Zeroizing<String>, String>,
    ) -> Result<Self, AuthorityError> {
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
        if file.kind != FILE_KIND || !matches!(file.version, 1 | 2) || file.alg != "ed25519" {
            return Err(err(format!(
                "not a version-1 or -2 ed25519 {FILE_KIND} file (kind {:?}, version {}, alg {:?})",
                file.kind, file.version, file.alg
            )));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        match (file.version, &file.seed, &file.protected) {
            (1, Some(hex_seed), None) => {
                hex::decode_to_slice(hex_seed.as_bytes(), seed.as_mut())
                    .map_err(|_| err("seed is not 64 hex digits".into()))?;
            }
            (2, None, Some(p)) if p.kdf == "argon2id" => {
                let salt = hex::decode(&p.salt).map_err(|_| err("salt is not hex".into()))?;
                let sealed =
                    hex::decode(&p.sealed).map_err(|_| err("sealed seed is not hex".into()))?;
                let pass = passphrase().map_err(|e| err(format!("passphrase needed: {e}")))?;
                let key = passphrase_key(pass.as_bytes(), &salt, p.m_kib, p.t, p.p).map_err(err)?;
                let plain = cloister_crypto::aead::open(&key, &seed_aad(&file.public_key), &sealed)
                    .map_err(|_| err("wrong passphrase (or the file was altered)".into()))?;
                if plain.len() != 32 {
                    return Err(err("the sealed seed is not 32 bytes".into()));
                }
                seed.copy_from_slice(plain.expose());
            }
            _ => {
                return Err(err(
                    "version 1 holds `seed`, version 2 holds argon2id `protected`; this file does neither"
                        .into(),
                ));
            }
        }
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

    #[test]
    fn passphrase_protects_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ci.json");
        let id = Identity::generate("ci").unwrap();
        id.save_with_passphrase(&path, "correct horse").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&hex::encode(id.key.seed().expose())),
            "the seed is not in the file"
        );
        assert!(Identity::is_protected(&path));
        let e = Identity::load(&path).unwrap_err().to_string();
        assert!(e.contains("passphrase"), "{e}");
        let wrong = Identity::load_with(&path, &mut || Ok(Zeroizing::new("wrong".into())))
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("wrong passphrase"), "{wrong}");
        let back =
            Identity::load_with(&path, &mut || Ok(Zeroizing::new("correct horse".into()))).unwrap();
        assert_eq!(back.id(), id.id());
        // A flipped byte of the sealed seed is caught, never a different key.
        let mut f: serde_json::Value = serde_json::from_str(&text).unwrap();
        let sealed = f["protected"]["sealed"].as_str().unwrap().to_owned();
        let flipped = format!(
            "{}{}",
            if sealed.starts_with('0') { "1" } else { "0" },
            &sealed[1..]
        );
        f["protected"]["sealed"] = flipped.into();
        let other = dir.path().join("altered.json");
        std::fs::write(&other, f.to_string()).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(
            Identity::load_with(&other, &mut || Ok(Zeroizing::new("correct horse".into())))
                .is_err()
        );
        assert!(
            id.save_with_passphrase(&dir.path().join("e.json"), "")
                .is_err()
        );
    }
}
