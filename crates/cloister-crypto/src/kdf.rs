//! HKDF-SHA256 key derivation (RFC 5869).

use crate::error::CryptoError;
use crate::key::SecretKey32;
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};

/// Derives a 256-bit key from input keying material, a salt and a context label.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8]) -> Result<SecretKey32, CryptoError> {
    let mut out = [0u8; 32];
    Salt::new(HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| CryptoError::Encrypt)?;
    Ok(SecretKey32::from_array(out))
}

#[cfg(test)]
mod tests {
    use super::hkdf_sha256;

    #[test]
    fn rfc5869_test_case_1() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let okm = hkdf_sha256(&ikm, &salt, &info).expect("hkdf");
        // First 32 of the 42 bytes of OKM in RFC 5869 A.1.
        assert_eq!(
            hex::encode(okm.expose()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    #[test]
    fn salt_and_info_separate_keys() {
        let a = hkdf_sha256(b"k", b"m1", b"seal").expect("a");
        assert_ne!(a, hkdf_sha256(b"k", b"m2", b"seal").expect("b"));
        assert_ne!(a, hkdf_sha256(b"k", b"m1", b"other").expect("c"));
    }
}
