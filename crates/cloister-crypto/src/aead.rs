//! AES-256-GCM with a random 96-bit nonce: `version (1) || nonce (12) || ciphertext || tag (16)`.

use crate::aad::Aad;
use crate::error::CryptoError;
use crate::key::{SecretBytes, SecretKey32, random_bytes};
use aws_lc_rs::aead::{AES_256_GCM, Aad as LcAad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Layout version of a sealed blob.
const VERSION: u8 = 1;
/// Bytes added to the plaintext: version, nonce and tag.
pub const OVERHEAD: usize = 1 + NONCE_LEN + 16;

fn cipher(key: &SecretKey32) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, key.expose())
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Encrypt)
}

/// Encrypts `plaintext` under `key`, bound to `aad`.
pub fn seal(key: &SecretKey32, aad: &Aad, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce_bytes = random_bytes::<NONCE_LEN>()?;
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.push(VERSION);
    out.extend_from_slice(&nonce_bytes);
    let mut body = plaintext.to_vec();
    cipher(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            LcAad::from(aad.as_bytes()),
            &mut body,
        )
        .map_err(|_| CryptoError::Encrypt)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decrypts a blob made by [`seal`] with the same key and AAD.
pub fn open(key: &SecretKey32, aad: &Aad, blob: &[u8]) -> Result<SecretBytes, CryptoError> {
    if blob.len() < OVERHEAD {
        return Err(CryptoError::malformed(
            "ciphertext",
            format!(
                "{} bytes, shorter than the {OVERHEAD}-byte overhead",
                blob.len()
            ),
        ));
    }
    if blob[0] != VERSION {
        return Err(CryptoError::malformed(
            "ciphertext",
            format!("unknown layout version {}", blob[0]),
        ));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&blob[1..1 + NONCE_LEN]);
    // The buffer is owned by `SecretBytes`, so the plaintext is zeroized however this returns.
    let mut body = SecretBytes::new(blob[1 + NONCE_LEN..].to_vec());
    let len = cipher(key)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            LcAad::from(aad.as_bytes()),
            body.as_mut_vec(),
        )
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    body.as_mut_vec().truncate(len);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey32 {
        SecretKey32::random().expect("rng")
    }

    #[test]
    fn round_trip_and_every_binding_is_enforced() {
        let k = key();
        let aad = Aad::new("t")
            .str("function-1/production/default/API_KEY")
            .u64(3);
        let blob = seal(&k, &aad, b"s3cret").expect("seal");
        assert_eq!(open(&k, &aad, &blob).expect("open").expose(), b"s3cret");
        // Another row (different path or version) cannot open it.
        let other = Aad::new("t")
            .str("function-2/production/default/API_KEY")
            .u64(3);
        assert_eq!(open(&k, &other, &blob), Err(CryptoError::Decrypt));
        assert_eq!(
            open(
                &k,
                &Aad::new("t")
                    .str("function-1/production/default/API_KEY")
                    .u64(4),
                &blob
            ),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(open(&key(), &aad, &blob), Err(CryptoError::Decrypt));
        // Every single flipped bit is caught.
        for i in 1..blob.len() {
            let mut t = blob.clone();
            t[i] ^= 0x01;
            assert_eq!(open(&k, &aad, &t), Err(CryptoError::Decrypt), "byte {i}");
        }
        assert!(matches!(
            open(&k, &aad, &blob[..OVERHEAD - 1]),
            Err(CryptoError::Malformed { .. })
        ));
        let mut v = blob.clone();
        v[0] = 9;
        assert!(matches!(
            open(&k, &aad, &v),
            Err(CryptoError::Malformed { .. })
        ));
    }

    #[test]
    fn nonces_are_fresh() {
        let k = key();
        let aad = Aad::new("t");
        assert_ne!(
            seal(&k, &aad, b"x").expect("a"),
            seal(&k, &aad, b"x").expect("b")
        );
    }
}
