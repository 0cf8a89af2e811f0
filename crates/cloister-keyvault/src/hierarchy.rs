//! MEK (wrapped by the root) → versioned DEK per namespace (wrapped by the MEK) → values.

use crate::error::KeyvaultError;
use cloister_crypto::envelope::{unwrap, wrap};
use cloister_crypto::{Aad, KeyId, SecretBytes, SecretKey32, WrappedKey, aead};

/// The master encryption key.
#[derive(Debug)]
pub struct Mek {
    /// Its identifier.
    pub id: KeyId,
    key: SecretKey32,
}

fn mek_context() -> Aad {
    Aad::new("cloister/mek/v1")
}

fn dek_context(namespace: &str, version: u32) -> Aad {
    Aad::new("cloister/dek/v1")
        .str(namespace)
        .u64(u64::from(version))
}

/// AAD of a secret value: its full path, its version and the DEK that encrypts it.
pub fn secret_aad(path: &str, version: u64, dek_id: &KeyId) -> Aad {
    Aad::new("cloister/secret/v1")
        .str(path)
        .u64(version)
        .bytes(dek_id.as_bytes())
}

impl Mek {
    /// A fresh random MEK.
    pub fn generate() -> Result<Self, KeyvaultError> {
        Ok(Self {
            id: KeyId::random()?,
            key: SecretKey32::random()?,
        })
    }

    /// The MEK wrapped under the root key.
    pub fn wrap(&self, root: &SecretKey32, root_id: KeyId) -> Result<WrappedKey, KeyvaultError> {
        Ok(wrap(root, root_id, &self.key, self.id, &mek_context())?)
    }

    /// Unwraps the MEK named `id`.
    pub fn unwrap(
        root: &SecretKey32,
        wrapped: &WrappedKey,
        id: KeyId,
    ) -> Result<Self, KeyvaultError> {
        let key =
            unwrap(root, wrapped, id, &mek_context()).map_err(KeyvaultError::corrupt("MEK"))?;
        Ok(Self { id, key })
    }
}

/// A data encryption key: one per function namespace and version.
#[derive(Debug)]
pub struct Dek {
    /// Its identifier.
    pub id: KeyId,
    /// Namespace it encrypts (e.g. `function-<id>`).
    pub namespace: String,
    /// Version within the namespace (1, 2, ... after each rotation).
    pub version: u32,
    key: SecretKey32,
}

impl Dek {
    /// A fresh random DEK for `namespace` at `version`.
    pub fn generate(namespace: &str, version: u32) -> Result<Self, KeyvaultError> {
        Ok(Self {
            id: KeyId::random()?,
            namespace: namespace.to_owned(),
            version,
            key: SecretKey32::random()?,
        })
    }

    /// The DEK wrapped under the MEK, bound to its namespace and version.
    pub fn wrap(&self, mek: &Mek) -> Result<WrappedKey, KeyvaultError> {
        Ok(wrap(
            &mek.key,
            mek.id,
            &self.key,
            self.id,
            &dek_context(&self.namespace, self.version),
        )?)
    }

    /// Unwraps a DEK; it must be for exactly this namespace and version.
    pub fn unwrap(
        mek: &Mek,
        wrapped: &WrappedKey,
        id: KeyId,
        namespace: &str,
        version: u32,
    ) -> Result<Self, KeyvaultError> {
        if wrapped.kek_id != mek.id {
            return Err(KeyvaultError::Corrupt { what: "DEK" });
        }
        let key = unwrap(&mek.key, wrapped, id, &dek_context(namespace, version))
            .map_err(KeyvaultError::corrupt("DEK"))?;
        Ok(Self {
            id,
            namespace: namespace.to_owned(),
            version,
            key,
        })
    }

    /// Encrypts a secret value stored at `path`, `version`.
    pub fn encrypt_value(
        &self,
        path: &str,
        version: u64,
        value: &[u8],
    ) -> Result<Vec<u8>, KeyvaultError> {
        self.check_path(path)?;
        Ok(aead::seal(
            &self.key,
            &secret_aad(path, version, &self.id),
            value,
        )?)
    }

    /// Decrypts the value stored at `path`, `version`; a ciphertext from any other row fails.
    pub fn decrypt_value(
        &self,
        path: &str,
        version: u64,
        blob: &[u8],
    ) -> Result<SecretBytes, KeyvaultError> {
        self.check_path(path)?;
        aead::open(&self.key, &secret_aad(path, version, &self.id), blob)
            .map_err(KeyvaultError::corrupt("secret value"))
    }

    fn check_path(&self, path: &str) -> Result<(), KeyvaultError> {
        match path.strip_prefix(self.namespace.as_str()) {
            Some(rest) if rest.starts_with('/') => Ok(()),
            _ => Err(KeyvaultError::Invalid {
                what: "secret path",
                reason: format!("`{path}` is not in namespace `{}`", self.namespace),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: &str = "function-1/production/default/API_KEY";
    const P1B: &str = "function-1/production/default/OTHER";

    fn setup() -> (SecretKey32, KeyId, Mek, Dek) {
        let root = SecretKey32::random().expect("rng");
        let root_id = KeyId::random().expect("rng");
        (
            root,
            root_id,
            Mek::generate().expect("mek"),
            Dek::generate("function-1", 1).expect("dek"),
        )
    }

    #[test]
    fn hierarchy_round_trip_through_wrapped_keys() {
        let (root, root_id, mek, dek) = setup();
        let wm = mek.wrap(&root, root_id).expect("wrap mek");
        let wd = dek.wrap(&mek).expect("wrap dek");
        let ct = dek.encrypt_value(P1, 3, b"sk_live_123").expect("enc");
        assert!(!ct.windows(11).any(|w| w == b"sk_live_123"));
        let mek2 = Mek::unwrap(&root, &wm, mek.id).expect("mek");
        let dek2 = Dek::unwrap(&mek2, &wd, dek.id, "function-1", 1).expect("dek");
        assert_eq!(
            dek2.decrypt_value(P1, 3, &ct).expect("dec").expose(),
            b"sk_live_123"
        );
    }

    #[test]
    fn a_ciphertext_copied_to_another_row_fails() {
        let (_, _, _, dek) = setup();
        let ct = dek.encrypt_value(P1, 1, b"v").expect("enc");
        assert_eq!(
            dek.decrypt_value(P1B, 1, &ct).err(),
            Some(KeyvaultError::Corrupt {
                what: "secret value"
            })
        );
        assert_eq!(
            dek.decrypt_value(P1, 2, &ct).err(),
            Some(KeyvaultError::Corrupt {
                what: "secret value"
            })
        );
        // Another function's DEK, even for the same path text, cannot open it.
        let other = Dek::generate("function-1", 2).expect("dek");
        assert!(other.decrypt_value(P1, 1, &ct).is_err());
        // A path outside the DEK's namespace is refused before any crypto.
        assert!(matches!(
            dek.encrypt_value("function-2/production/default/API_KEY", 1, b"v"),
            Err(KeyvaultError::Invalid { .. })
        ));
        assert!(matches!(
            dek.encrypt_value("function-10/x/y/z", 1, b"v"),
            Err(KeyvaultError::Invalid { .. })
        ));
    }

    #[test]
    fn wrapped_deks_are_bound_to_namespace_version_and_mek() {
        let (root, root_id, mek, dek) = setup();
        let wd = dek.wrap(&mek).expect("wrap");
        assert!(Dek::unwrap(&mek, &wd, dek.id, "function-2", 1).is_err());
        assert!(Dek::unwrap(&mek, &wd, dek.id, "function-1", 2).is_err());
        let other_mek = Mek::generate().expect("mek");
        assert_eq!(
            Dek::unwrap(&other_mek, &wd, dek.id, "function-1", 1).err(),
            Some(KeyvaultError::Corrupt { what: "DEK" })
        );
        let wm = mek.wrap(&root, root_id).expect("wrap");
        let wrong_root = SecretKey32::random().expect("rng");
        assert_eq!(
            Mek::unwrap(&wrong_root, &wm, mek.id).err(),
            Some(KeyvaultError::Corrupt { what: "MEK" })
        );
    }

    #[test]
    fn mek_rotation_rewraps_deks_and_values_stay_readable() {
        let (root, root_id, mek, dek) = setup();
        let ct = dek.encrypt_value(P1, 1, b"value").expect("enc");
        let new_mek = Mek::generate().expect("mek");
        let rewrapped = dek.wrap(&new_mek).expect("rewrap");
        let _ = new_mek.wrap(&root, root_id).expect("wrap new mek");
        let dek2 = Dek::unwrap(&new_mek, &rewrapped, dek.id, "function-1", 1).expect("dek");
        assert_eq!(
            dek2.decrypt_value(P1, 1, &ct).expect("dec").expose(),
            b"value"
        );
        // The old MEK no longer opens the re-wrapped DEK.
        assert!(Dek::unwrap(&mek, &rewrapped, dek.id, "function-1", 1).is_err());
    }
}
