//! HPKE (RFC 9180) base mode, one suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
//!
//! A sealed message is `enc (32 bytes) || ciphertext`. `info` names the purpose and the
//! recipient context (e.g. which keyvault, which secret path), `aad` binds further context.

use crate::error::CryptoError;
use crate::key::{SecretBytes, SecretKey32};
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};

use crate::x25519_kem::{EncappedKey, PrivateKey, PublicKey, X25519HkdfSha256AwsLc};

type SuiteKem = X25519HkdfSha256AwsLc;

/// Length of the encapsulated key that starts every sealed message.
pub const ENC_LEN: usize = 32;

/// Name of the suite, for bundles and docs.
pub const SUITE: &str = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM";

/// A recipient's public key (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HpkePublicKey(pub [u8; 32]);

impl HpkePublicKey {
    /// Parses 32 raw bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            CryptoError::malformed(
                "HPKE public key",
                format!("{} bytes, expected 32", bytes.len()),
            )
        })?;
        Ok(Self(arr))
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Seals `plaintext` to this key.
    pub fn seal(&self, info: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let pk = PublicKey::from_bytes(&self.0)
            .map_err(|_| CryptoError::malformed("HPKE public key", "not an X25519 point"))?;
        let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, SuiteKem>(
            &OpModeS::Base,
            &pk,
            info,
            plaintext,
            aad,
        )
        .map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(ENC_LEN + ct.len());
        out.extend_from_slice(&enc.to_bytes());
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

/// Length of the secret [`HpkePublicKey::seal_exporting`] exports from the sealing context.
pub const EXPORT_LEN: usize = 32;

impl HpkePublicKey {
    /// Seals `plaintext` to this key like [`HpkePublicKey::seal`], and exports a
    /// [`EXPORT_LEN`]-byte secret from the same context under `exporter_ctx` (RFC 9180 §5.3):
    /// the key the recipient's answer comes back under, which only the two ends can derive.
    pub fn seal_exporting(
        &self,
        info: &[u8],
        aad: &[u8],
        plaintext: &[u8],
        exporter_ctx: &[u8],
    ) -> Result<(Vec<u8>, SecretKey32), CryptoError> {
        let pk = PublicKey::from_bytes(&self.0)
            .map_err(|_| CryptoError::malformed("HPKE public key", "not an X25519 point"))?;
        let (enc, mut ctx) =
            hpke::setup_sender::<AesGcm256, HkdfSha256, SuiteKem>(&OpModeS::Base, &pk, info)
                .map_err(|_| CryptoError::Encrypt)?;
        let ct = ctx.seal(plaintext, aad).map_err(|_| CryptoError::Encrypt)?;
        let mut exported = [0u8; EXPORT_LEN];
        ctx.export(exporter_ctx, &mut exported)
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(ENC_LEN + ct.len());
        out.extend_from_slice(&enc.to_bytes());
        out.extend_from_slice(&ct);
        Ok((out, SecretKey32::from_array(exported)))
    }
}

/// A recipient's key pair; the private key is kept as zeroizing bytes and parsed once, so
/// opening a message is a single X25519 multiplication.
pub struct HpkeKeyPair {
    private: SecretKey32,
    public: HpkePublicKey,
    sk: PrivateKey,
}

impl HpkeKeyPair {
    /// A fresh random key pair.
    pub fn generate() -> Result<Self, CryptoError> {
        Self::derive(SecretKey32::random()?.expose())
    }

    /// The key pair deterministically derived from 32 bytes of keying material (RFC 9180 §7.1.3).
    pub fn derive(ikm: &[u8; 32]) -> Result<Self, CryptoError> {
        let (sk, pk) = SuiteKem::derive_keypair(ikm);
        Ok(Self {
            private: SecretKey32::from_array(*sk.scalar()),
            public: HpkePublicKey(*pk.bytes()),
            sk,
        })
    }

    /// Rebuilds a key pair from its stored private key.
    pub fn from_private(private: SecretKey32) -> Result<Self, CryptoError> {
        let sk = PrivateKey::from_scalar(private.expose())
            .map_err(|_| CryptoError::malformed("HPKE private key", "rejected"))?;
        Ok(Self {
            // Stored clamped, like `derive` stores it, whatever form it arrived in.
            private: SecretKey32::from_array(*sk.scalar()),
            public: HpkePublicKey(*sk.public().bytes()),
            sk,
        })
    }

    /// The private key bytes, for sealing to storage.
    pub fn private(&self) -> &SecretKey32 {
        &self.private
    }

    /// The public key.
    pub fn public(&self) -> HpkePublicKey {
        self.public
    }

    /// Opens a message sealed to this key with the same `info` and `aad`.
    pub fn open(&self, info: &[u8], aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        if sealed.len() < ENC_LEN + 16 {
            return Err(CryptoError::malformed(
                "HPKE message",
                format!("{} bytes, too short", sealed.len()),
            ));
        }
        let (enc, ct) = sealed.split_at(ENC_LEN);
        let enc = EncappedKey::from_bytes(enc)
            .map_err(|_| CryptoError::malformed("HPKE message", "bad encapsulated key"))?;
        hpke::single_shot_open::<AesGcm256, HkdfSha256, SuiteKem>(
            &OpModeR::Base,
            &self.sk,
            &enc,
            info,
            ct,
            aad,
        )
        .map(SecretBytes::new)
        .map_err(|_| CryptoError::Decrypt)
    }
}

impl HpkeKeyPair {
    /// Opens a message made by [`HpkePublicKey::seal_exporting`] and exports the same secret.
    pub fn open_exporting(
        &self,
        info: &[u8],
        aad: &[u8],
        sealed: &[u8],
        exporter_ctx: &[u8],
    ) -> Result<(SecretBytes, SecretKey32), CryptoError> {
        if sealed.len() < ENC_LEN + 16 {
            return Err(CryptoError::malformed(
                "HPKE message",
                format!("{} bytes, too short", sealed.len()),
            ));
        }
        let (enc, ct) = sealed.split_at(ENC_LEN);
        let enc = EncappedKey::from_bytes(enc)
            .map_err(|_| CryptoError::malformed("HPKE message", "bad encapsulated key"))?;
        let mut ctx = hpke::setup_receiver::<AesGcm256, HkdfSha256, SuiteKem>(
            &OpModeR::Base,
            &self.sk,
            &enc,
            info,
        )
        .map_err(|_| CryptoError::Decrypt)?;
        let plaintext = SecretBytes::new(ctx.open(ct, aad).map_err(|_| CryptoError::Decrypt)?);
        let mut exported = [0u8; EXPORT_LEN];
        ctx.export(exporter_ctx, &mut exported)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok((plaintext, SecretKey32::from_array(exported)))
    }
}

impl std::fmt::Debug for HpkeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HpkeKeyPair(public {})", self.public.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_bindings() {
        let kp = HpkeKeyPair::generate().expect("kp");
        let sealed = kp.public().seal(b"info", b"aad", b"value").expect("seal");
        assert_eq!(
            kp.open(b"info", b"aad", &sealed).expect("open").expose(),
            b"value"
        );
        assert_eq!(
            kp.open(b"other", b"aad", &sealed),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            kp.open(b"info", b"other", &sealed),
            Err(CryptoError::Decrypt)
        );
        let other = HpkeKeyPair::generate().expect("kp");
        assert_eq!(
            other.open(b"info", b"aad", &sealed),
            Err(CryptoError::Decrypt)
        );
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x80;
            assert!(kp.open(b"info", b"aad", &t).is_err(), "byte {i}");
        }
        assert!(matches!(
            kp.open(b"info", b"aad", &sealed[..40]),
            Err(CryptoError::Malformed { .. })
        ));
    }

    #[test]
    fn both_ends_export_the_same_secret_and_only_they_can() {
        let kp = HpkeKeyPair::generate().expect("kp");
        let (sealed, sent) = kp
            .public()
            .seal_exporting(b"info", b"aad", b"params", b"resp")
            .expect("seal");
        let (pt, got) = kp
            .open_exporting(b"info", b"aad", &sealed, b"resp")
            .expect("open");
        assert_eq!(pt.expose(), b"params");
        assert_eq!(sent.expose(), got.expose());
        // Another exporter context, or another message to the same key, exports another key.
        let (_, other_ctx) = kp
            .open_exporting(b"info", b"aad", &sealed, b"other")
            .expect("open");
        assert_ne!(other_ctx.expose(), sent.expose());
        let (sealed2, sent2) = kp
            .public()
            .seal_exporting(b"info", b"aad", b"params", b"resp")
            .expect("seal");
        assert_ne!(sent2.expose(), sent.expose());
        assert_ne!(sealed2, sealed);
        // The single-shot opener reads the same format.
        assert_eq!(
            kp.open(b"info", b"aad", &sealed).expect("open").expose(),
            b"params"
        );
        assert_eq!(
            kp.open_exporting(b"inf0", b"aad", &sealed, b"resp").err(),
            Some(CryptoError::Decrypt)
        );
    }

    #[test]
    fn stored_private_key_rebuilds_the_same_pair() {
        let kp = HpkeKeyPair::generate().expect("kp");
        let again = HpkeKeyPair::from_private(kp.private().clone()).expect("rebuild");
        assert_eq!(again.public(), kp.public());
        let sealed = kp.public().seal(b"i", b"", b"x").expect("seal");
        assert_eq!(again.open(b"i", b"", &sealed).expect("open").expose(), b"x");
        assert!(!format!("{kp:?}").contains(&hex::encode(kp.private().expose())));
    }

    #[test]
    fn rfc9180_a1_derive_keypair() {
        // RFC 9180 A.1 (DHKEM(X25519, HKDF-SHA256)): ikmR → skR/pkR.
        let ikm: [u8; 32] =
            hex::decode("6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037")
                .expect("hex")
                .try_into()
                .expect("32");
        let kp = HpkeKeyPair::derive(&ikm).expect("derive");
        // The crate stores the scalar clamped (RFC 7748): 46→40 and c8→48 in the RFC's skRm.
        assert_eq!(
            hex::encode(kp.private().expose()),
            "4012c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8a48"
        );
        assert_eq!(
            kp.public().to_hex(),
            "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d"
        );
    }
}
