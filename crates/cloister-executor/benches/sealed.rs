//! What sealing and receipts cost each side, without the network (docs/SEALED.md):
//! client seal, executor open, executor answer seal, client open, receipt sign and verify.
//!
//! `cargo bench -p cloister-executor --bench sealed`

use std::sync::Arc;

use cloister_attest::sim::{SimAttester, SimPlatform};
use cloister_client::receipt::{ReceiptTrust, verify_receipt};
use cloister_client::sealed::{Target, seal_call};
use cloister_crypto::HpkeKeyPair;
use cloister_executor::fleet::{FleetKeyPair, FleetKeyring};
use cloister_executor::receipt::Notary;
use cloister_executor::sealed::SealedDoor;
use cloister_rpc::executor as pb;
use cloister_types::receipt::ReceiptBody;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::value::RawValue;
use sha2::Digest;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pair = HpkeKeyPair::derive(&[5; 32]).unwrap();
    let epoch = now() / cloister_types::fleet::ROTATION_SECS;
    let (nb, na) = cloister_types::fleet::validity(epoch);
    let key_id = sha2::Sha256::digest(pair.public().0)[..8].to_vec();
    let wire = cloister_rpc::keyvault::FleetSecret {
        key_id: key_id.clone(),
        epoch,
        public_key: pair.public().0.to_vec(),
        private_key: pair.private().expose().to_vec(),
        not_before: nb,
        not_after: na,
    };
    let ring = Arc::new(FleetKeyring::default());
    ring.replace(vec![FleetKeyPair::from_wire(&wire).unwrap()]);
    let door = SealedDoor::new(ring, now() - 1);
    let client_key = cloister_client::attestation::TrustedFleetKey {
        key_id: key_id.clone().try_into().unwrap(),
        epoch,
        public: pair.public(),
        not_before: nb,
        not_after: na,
    };
    let target = Target {
        function_id: "f".into(),
        version: 1,
        code_hash: format!("sha256:{}", "ab".repeat(32)),
        manifest_digest: "cd".repeat(32),
    };
    let params = r#"{"a":2,"b":3}"#;
    let to_pb = |call: &cloister_client::sealed::SealedCall| {
        use base64::Engine as _;
        let i = &call.input;
        pb::SealedInput {
            suite: i.suite.clone(),
            key_id: i.key_id.clone(),
            function_id: i.function_id.clone(),
            version: i.version,
            code_hash: i.code_hash.clone(),
            manifest_digest: i.manifest_digest.clone(),
            request_id: i.request_id.clone(),
            timestamp: i.timestamp,
            ciphertext: base64::engine::general_purpose::STANDARD
                .decode(&i.ciphertext)
                .unwrap(),
        }
    };

    c.bench_function("client seal (HPKE + base64)", |b| {
        b.iter(|| seal_call(&client_key, &target, params, now()).unwrap())
    });
    c.bench_function("executor open (HPKE open + replay check)", |b| {
        b.iter_batched(
            || to_pb(&seal_call(&client_key, &target, params, now()).unwrap()),
            |s| rt.block_on(door.open(&s, now(), 1 << 20)).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    let call = seal_call(&client_key, &target, params, now()).unwrap();
    let opened = rt
        .block_on(door.open(&to_pb(&call), now(), 1 << 20))
        .unwrap();
    c.bench_function("executor seal answer", |b| {
        b.iter(|| {
            opened
                .seal(
                    "exec",
                    Ok(RawValue::from_string(r#"{"sum":5}"#.into()).unwrap()),
                    vec![],
                )
                .unwrap()
        })
    });
    let answer = opened
        .seal(
            "exec",
            Ok(RawValue::from_string(r#"{"sum":5}"#.into()).unwrap()),
            vec![],
        )
        .unwrap();
    let sealed_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&answer.sealed)
    };
    c.bench_function("client open answer", |b| {
        b.iter(|| call.open("exec", "ok", &sealed_b64).unwrap())
    });

    let platform = Arc::new(SimPlatform::generate().unwrap());
    let attester = SimAttester::new(platform.clone(), "executor", [3; 48]);
    let notary = Notary::new(&attester).unwrap();
    let body = ReceiptBody {
        function_id: "f".into(),
        version: 1,
        code_hash: target.code_hash.clone(),
        manifest_digest: target.manifest_digest.clone(),
        input_sha256: "00".repeat(32),
        output_sha256: "11".repeat(32),
        outcome: "ok".into(),
        execution_id: "exec".into(),
        time: now(),
        nonce: "22".repeat(32),
        fleet_key_id: hex::encode(&key_id),
        request_id: "33".repeat(16),
        key_uses: Vec::new(),
        egress: Vec::new(),
    };
    c.bench_function("receipt sign", |b| {
        b.iter(|| notary.sign(body.clone(), &[]))
    });
    // Everything the servers add to a call for its receipt, but the bytes on the wire: the
    // executor hashes the answer, signs and serialises the receipt; the gateway parses it
    // and writes it into its own answer. With the evidence left out (the caller named the
    // signer) and with it.
    let holds = notary.public_key().to_vec();
    for (label, caller_holds) in [
        ("receipt, server path (evidence left out)", holds.as_slice()),
        ("receipt, server path (with evidence)", &[][..]),
    ] {
        c.bench_function(label, |b| {
            b.iter(|| {
                let mut body = body.clone();
                body.output_sha256 =
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(br#"{"sum":5}"#));
                let json = serde_json::to_string(&notary.sign(body, caller_holds)).unwrap();
                let relayed: cloister_types::receipt::Receipt =
                    serde_json::from_str(&json).unwrap();
                serde_json::to_vec(&relayed).unwrap()
            })
        });
    }
    let receipt = notary.sign(body, &[]);
    let trust = ReceiptTrust::new(platform.fingerprint_hex(), vec![hex::encode([3u8; 48])]);
    c.bench_function(
        "receipt verify (first from an executor: evidence chain + signature)",
        |b| {
            b.iter(|| {
                let fresh = ReceiptTrust::new(
                    trust.root_fingerprint.clone(),
                    trust.executor_measurements.clone(),
                );
                verify_receipt(&receipt, &fresh).unwrap()
            })
        },
    );
    verify_receipt(&receipt, &trust).unwrap();
    c.bench_function("receipt verify (signer already verified)", |b| {
        b.iter(|| verify_receipt(&receipt, &trust).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
