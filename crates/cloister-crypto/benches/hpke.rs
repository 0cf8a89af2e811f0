//! Our HPKE suite over aws-lc's X25519 ([`cloister_crypto::x25519_kem`]) next to the `hpke`
//! crate's own X25519 KEM (x25519-dalek), in the same run: seal + export (a client) and
//! open + export (an executor), one 200-byte message each.
//!
//! `cargo bench -p cloister-crypto --bench hpke`

use cloister_crypto::x25519_kem::X25519HkdfSha256AwsLc;
use criterion::{Criterion, criterion_group, criterion_main};
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use std::hint::black_box;

const MESSAGE: &[u8] = &[7u8; 200];

fn seal<K: Kem>(pk: &K::PublicKey) -> (Vec<u8>, Vec<u8>) {
    let (enc, mut ctx) =
        hpke::setup_sender::<AesGcm256, HkdfSha256, K>(&OpModeS::Base, pk, b"info").unwrap();
    let ct = ctx.seal(MESSAGE, b"").unwrap();
    let mut key = [0u8; 32];
    ctx.export(b"response", &mut key).unwrap();
    (enc.to_bytes().to_vec(), ct)
}

fn open<K: Kem>(sk: &K::PrivateKey, enc: &[u8], ct: &[u8]) -> Vec<u8> {
    let enc = K::EncappedKey::from_bytes(enc).unwrap();
    let mut ctx =
        hpke::setup_receiver::<AesGcm256, HkdfSha256, K>(&OpModeR::Base, sk, &enc, b"info")
            .unwrap();
    let pt = ctx.open(ct, b"").unwrap();
    let mut key = [0u8; 32];
    ctx.export(b"response", &mut key).unwrap();
    pt
}

fn suite<K: Kem>(c: &mut Criterion, name: &str) {
    let (sk, pk) = K::derive_keypair(&[3u8; 32]);
    let (enc, ct) = seal::<K>(&pk);
    c.bench_function(&format!("{name}/seal+export"), |b| {
        b.iter(|| seal::<K>(black_box(&pk)))
    });
    c.bench_function(&format!("{name}/open+export"), |b| {
        b.iter(|| open::<K>(black_box(&sk), &enc, &ct))
    });
}

fn bench(c: &mut Criterion) {
    suite::<X25519HkdfSha256AwsLc>(c, "aws-lc");
    suite::<X25519HkdfSha256>(c, "dalek");
}

criterion_group!(benches, bench);
criterion_main!(benches);
