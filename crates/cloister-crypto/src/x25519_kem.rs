//! DHKEM(X25519, HKDF-SHA256) (RFC 9180 §4.1, KEM id 0x0020) for the `hpke` crate, with the
//! Diffie-Hellman done by aws-lc.
//!
//! `hpke` runs the key schedule, the AEAD and the exporter; this module only supplies the KEM.
//! Two reasons it exists rather than `hpke::kem::X25519HkdfSha256`:
//! - aws-lc's X25519 is about twice as fast as `x25519-dalek` on our machines
//!   (docs/PERFORMANCE.md);
//! - a recipient's key is parsed once and keeps its public key, so opening a message is one
//!   scalar multiplication instead of two (DHKEM hashes the recipient's public key into the KEM
//!   context, and `hpke`'s own KEM recomputes it from the private key on every decapsulation).
//!
//! The labelled HKDF steps (`ExtractAndExpand`, `DeriveKeyPair`) are `hpke`'s own, through its
//! [`hpke::kdf::Kdf`] trait, so nothing of RFC 9180 is re-implemented here but the glue. Only
//! base mode is offered: the authenticated modes are refused. RFC 9180 test vectors and a
//! round trip against `hpke`'s KEM in both directions are in the tests.

use aws_lc_rs::agreement::{self, PrivateKey as LcPrivateKey, UnparsedPublicKey, X25519};
use hpke::hybrid_array::typenum::U32;
use hpke::kdf::{HkdfSha256, Kdf};
use hpke::kem::SharedSecret;
use hpke::rand_core::CryptoRng;
use hpke::{Deserializable, HpkeError, Kem, Serializable};
use std::sync::Arc;
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

/// RFC 9180 §7.1: DHKEM(X25519, HKDF-SHA256).
const KEM_ID: u16 = 0x0020;

/// `suite_id = "KEM" || I2OSP(kem_id, 2)` (RFC 9180 §4.1).
const SUITE_ID: [u8; 5] = [b'K', b'E', b'M', (KEM_ID >> 8) as u8, KEM_ID as u8];

/// The KEM, to name as `hpke`'s `Kem` type parameter.
#[derive(Debug, Clone, Copy)]
pub struct X25519HkdfSha256AwsLc;

/// An X25519 public key (32 bytes, as on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The raw 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Serializable for PublicKey {
    type OutputSize = U32;

    fn write_exact(&self, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0);
    }
}

impl Deserializable for PublicKey {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        let bytes: [u8; 32] = encoded
            .try_into()
            .map_err(|_| HpkeError::IncorrectInputLength(32, encoded.len()))?;
        Ok(Self(bytes))
    }
}

/// The encapsulated key: the sender's ephemeral public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncappedKey(PublicKey);

impl Serializable for EncappedKey {
    type OutputSize = U32;

    fn write_exact(&self, buf: &mut [u8]) {
        self.0.write_exact(buf);
    }
}

impl Deserializable for EncappedKey {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        PublicKey::from_bytes(encoded).map(Self)
    }
}

/// The parts of a private key, shared between clones.
struct Inner {
    /// The clamped scalar (RFC 7748 §5), kept for serialisation and comparison.
    scalar: Zeroizing<[u8; 32]>,
    /// aws-lc's parsed key (its memory is cleansed when freed).
    key: LcPrivateKey,
    /// The public key, computed once.
    public: PublicKey,
}

/// An X25519 private key, parsed once, with its public key.
#[derive(Clone)]
pub struct PrivateKey(Arc<Inner>);

impl PrivateKey {
    /// Parses a 32-byte scalar (clamped here, as X25519 would).
    pub fn from_scalar(scalar: &[u8; 32]) -> Result<Self, HpkeError> {
        let mut clamped = Zeroizing::new(*scalar);
        clamped[0] &= 248;
        clamped[31] &= 127;
        clamped[31] |= 64;
        let key = LcPrivateKey::from_private_key(&X25519, clamped.as_slice())
            .map_err(|_| HpkeError::ValidationError)?;
        let computed = key
            .compute_public_key()
            .map_err(|_| HpkeError::ValidationError)?;
        let public: [u8; 32] = computed
            .as_ref()
            .try_into()
            .map_err(|_| HpkeError::ValidationError)?;
        Ok(Self(Arc::new(Inner {
            scalar: clamped,
            key,
            public: PublicKey(public),
        })))
    }

    /// The clamped scalar.
    pub fn scalar(&self) -> &[u8; 32] {
        &self.0.scalar
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        self.0.public
    }

    /// X25519 with `peer`; aws-lc refuses an all-zero result (a small-order point), which RFC
    /// 9180 §7.1.4 requires.
    fn dh(&self, peer: &PublicKey) -> Result<Zeroizing<[u8; 32]>, ()> {
        agreement::agree(
            &self.0.key,
            UnparsedPublicKey::new(&X25519, &peer.0),
            (),
            |secret| {
                let mut out = Zeroizing::new([0u8; 32]);
                if secret.len() != 32 {
                    return Err(());
                }
                out.copy_from_slice(secret);
                Ok(out)
            },
        )
    }
}

impl ConstantTimeEq for PrivateKey {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.scalar.ct_eq(&*other.0.scalar)
    }
}

impl Serializable for PrivateKey {
    type OutputSize = U32;

    fn write_exact(&self, buf: &mut [u8]) {
        buf.copy_from_slice(self.0.scalar.as_slice());
    }
}

impl Deserializable for PrivateKey {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        let scalar: Zeroizing<[u8; 32]> = Zeroizing::new(
            encoded
                .try_into()
                .map_err(|_| HpkeError::IncorrectInputLength(32, encoded.len()))?,
        );
        Self::from_scalar(&scalar)
    }
}

/// `shared_secret = ExtractAndExpand(dh, enc || pkRm)` (RFC 9180 §4.1).
fn shared_secret(
    dh: &[u8; 32],
    enc: &PublicKey,
    recipient: &PublicKey,
) -> Result<SharedSecret<X25519HkdfSha256AwsLc>, HpkeError> {
    let mut kem_context = [0u8; 64];
    kem_context[..32].copy_from_slice(&enc.0);
    kem_context[32..].copy_from_slice(&recipient.0);
    let mut secret = SharedSecret::<X25519HkdfSha256AwsLc>::default();
    HkdfSha256::extract_and_expand(dh, &SUITE_ID, &kem_context, &mut secret.0)?;
    Ok(secret)
}

impl Kem for X25519HkdfSha256AwsLc {
    type PublicKey = PublicKey;
    type PrivateKey = PrivateKey;
    type EncappedKey = EncappedKey;
    type NSecret = U32;
    const KEM_ID: u16 = KEM_ID;

    fn sk_to_pk(sk: &PrivateKey) -> PublicKey {
        sk.public()
    }

    /// RFC 9180 §7.1.3: `sk = LabeledExpand(LabeledExtract("", "dkp_prk", ikm), "sk", "", 32)`.
    fn derive_keypair(ikm: &[u8]) -> (PrivateKey, PublicKey) {
        let scalar = Zeroizing::new(HkdfSha256::derive_x25519_sk_eph_bytes(&SUITE_ID, ikm));
        match PrivateKey::from_scalar(&scalar) {
            Ok(sk) => {
                let pk = sk.public();
                (sk, pk)
            }
            // aws-lc accepts every 32-byte X25519 scalar; this arm exists only because its API
            // returns a Result, and the trait gives no way to report an error here.
            Err(e) => panic!("aws-lc refused an X25519 scalar: {e}"),
        }
    }

    fn decap(
        sk_recip: &PrivateKey,
        pk_sender_id: Option<&PublicKey>,
        encapped_key: &EncappedKey,
    ) -> Result<SharedSecret<Self>, HpkeError> {
        if pk_sender_id.is_some() {
            return Err(HpkeError::DecapError);
        }
        let dh = sk_recip
            .dh(&encapped_key.0)
            .map_err(|()| HpkeError::DecapError)?;
        shared_secret(&dh, &encapped_key.0, &sk_recip.public())
    }

    fn encap_with_rng(
        pk_recip: &PublicKey,
        sender_id_keypair: Option<(&PrivateKey, &PublicKey)>,
        csprng: &mut impl CryptoRng,
    ) -> Result<(SharedSecret<Self>, EncappedKey), HpkeError> {
        if sender_id_keypair.is_some() {
            return Err(HpkeError::EncapError);
        }
        let (sk_eph, pk_eph) = Self::gen_keypair_with_rng(csprng);
        let dh = sk_eph.dh(pk_recip).map_err(|()| HpkeError::EncapError)?;
        let secret = shared_secret(&dh, &pk_eph, pk_recip)?;
        Ok((secret, EncappedKey(pk_eph)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpke::aead::AesGcm256;
    use hpke::{OpModeR, OpModeS};

    fn h32(s: &str) -> [u8; 32] {
        hex::decode(s).expect("hex").try_into().expect("32 bytes")
    }

    /// An RNG that yields fixed bytes, to replay the RFC's ephemeral key.
    struct Fixed(Vec<u8>);

    impl hpke::rand_core::TryRng for Fixed {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            unreachable!("only fill_bytes is used")
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            unreachable!("only fill_bytes is used")
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            let n = dst.len();
            dst.copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(())
        }
    }
    impl hpke::rand_core::TryCryptoRng for Fixed {}

    // RFC 9180 A.1.1, DHKEM(X25519, HKDF-SHA256), base mode.
    const IKM_E: &str = "7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234";
    const PK_EM: &str = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431";
    const IKM_R: &str = "6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037";
    const PK_RM: &str = "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d";
    const SHARED: &str = "fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc";

    type Ours = X25519HkdfSha256AwsLc;
    type Theirs = hpke::kem::X25519HkdfSha256;

    #[test]
    fn rfc9180_a1_1_keys_encap_and_decap() {
        let (sk_r, pk_r) = Ours::derive_keypair(&h32(IKM_R));
        assert_eq!(pk_r.bytes(), &h32(PK_RM));
        let (secret, enc) =
            Ours::encap_with_rng(&pk_r, None, &mut Fixed(h32(IKM_E).to_vec())).expect("encap");
        assert_eq!(enc.0.bytes(), &h32(PK_EM));
        assert_eq!(secret.0.as_slice(), &h32(SHARED));
        let opened = Ours::decap(&sk_r, None, &enc).expect("decap");
        assert_eq!(opened.0.as_slice(), &h32(SHARED));
    }

    #[test]
    fn small_order_points_and_auth_modes_are_refused() {
        let (sk_r, pk_r) = Ours::derive_keypair(&h32(IKM_R));
        // The all-zero point (and 1, order 4) make an all-zero DH output.
        for bad in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            let enc = EncappedKey::from_bytes(&bad).expect("32 bytes parse");
            assert_eq!(
                Ours::decap(&sk_r, None, &enc).err(),
                Some(HpkeError::DecapError)
            );
            assert_eq!(
                Ours::encap(&PublicKey(bad), None).err(),
                Some(HpkeError::EncapError)
            );
        }
        assert!(Ours::decap(&sk_r, Some(&pk_r), &EncappedKey(pk_r)).is_err());
        assert!(Ours::encap(&pk_r, Some((&sk_r, &pk_r))).is_err());
        assert!(EncappedKey::from_bytes(&[1u8; 31]).is_err());
    }

    #[test]
    fn interoperates_with_the_hpke_crates_own_kem_both_ways() {
        let ikm = [42u8; 32];
        let (our_sk, our_pk) = Ours::derive_keypair(&ikm);
        let (their_sk, their_pk) = Theirs::derive_keypair(&ikm);
        assert_eq!(our_pk.to_bytes(), their_pk.to_bytes());
        assert_eq!(our_sk.to_bytes(), their_sk.to_bytes());

        // Sealed with theirs, opened with ours.
        let (enc, mut tx) =
            hpke::setup_sender::<AesGcm256, HkdfSha256, Theirs>(&OpModeS::Base, &their_pk, b"i")
                .expect("setup");
        let ct = tx.seal(b"to ours", b"a").expect("seal");
        let mut sent = [0u8; 32];
        tx.export(b"x", &mut sent).expect("export");
        let enc = EncappedKey::from_bytes(&enc.to_bytes()).expect("enc");
        let mut rx = hpke::setup_receiver::<AesGcm256, HkdfSha256, Ours>(
            &OpModeR::Base,
            &our_sk,
            &enc,
            b"i",
        )
        .expect("setup");
        assert_eq!(rx.open(&ct, b"a").expect("open"), b"to ours");
        let mut got = [0u8; 32];
        rx.export(b"x", &mut got).expect("export");
        assert_eq!(sent, got);

        // Sealed with ours, opened with theirs.
        let (enc, mut tx) =
            hpke::setup_sender::<AesGcm256, HkdfSha256, Ours>(&OpModeS::Base, &our_pk, b"i")
                .expect("setup");
        let ct = tx.seal(b"to theirs", b"a").expect("seal");
        let enc = <Theirs as Kem>::EncappedKey::from_bytes(&enc.to_bytes()).expect("enc");
        let mut rx = hpke::setup_receiver::<AesGcm256, HkdfSha256, Theirs>(
            &OpModeR::Base,
            &their_sk,
            &enc,
            b"i",
        )
        .expect("setup");
        assert_eq!(rx.open(&ct, b"a").expect("open"), b"to theirs");
    }

    #[test]
    fn private_keys_compare_and_round_trip() {
        let (a, _) = Ours::derive_keypair(&[1; 32]);
        let (b, _) = Ours::derive_keypair(&[2; 32]);
        assert!(bool::from(a.ct_eq(&a.clone())));
        assert!(!bool::from(a.ct_eq(&b)));
        let again = PrivateKey::from_bytes(&a.to_bytes()).expect("parse");
        assert_eq!(again.public(), a.public());
        assert!(PrivateKey::from_bytes(&[0u8; 31]).is_err());
    }
}
