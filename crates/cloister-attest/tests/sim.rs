//! The simulated TEE: platform identity, evidence, verification against the pinned root,
//! policy (`allow_simulated`), sealing keys bound to the measurement.

use cloister_attest::attester::Attester;
use cloister_attest::sim::{SimAttester, SimEvidence, SimPlatform, SimVerifier, measure};
use cloister_attest::{Collateral, Format, Policy, TeeType, Verifier, detect_format};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

const M1: [u8; 48] = [0x11; 48];
const M2: [u8; 48] = [0x22; 48];

fn now() -> i64 {
    cloister_attest::time_fmt::now()
}

fn platform() -> Arc<SimPlatform> {
    Arc::new(SimPlatform::generate().expect("platform"))
}

fn verifier_for(p: &SimPlatform) -> SimVerifier {
    SimVerifier::pinning(p.root().der()).expect("pin")
}

#[test]
fn evidence_verifies_with_its_claims_and_is_labelled() {
    let p = platform();
    let rd = [0xAB; 64];
    let produced = SimAttester::new(p.clone(), "keyvault", M1)
        .attest(&rd)
        .expect("attest");
    assert_eq!(produced.tee, TeeType::Sim);
    assert_eq!(
        detect_format(&produced.evidence).expect("detect"),
        Format::Sim
    );
    let v = verifier_for(&p)
        .verify(&produced.evidence, &Collateral::default(), now())
        .expect("verify");
    let c = v.claims();
    assert_eq!(c.tee, TeeType::Sim);
    assert_eq!(c.measurement.0, M1.to_vec());
    assert_eq!(c.report_data.as_ref().expect("rd").0, rd.to_vec());
    assert_eq!(c.tee.label(), "sim (no hardware protection)");
    let json = serde_json::to_value(c).expect("json");
    assert_eq!(json["role"], "keyvault");
    assert_eq!(json["sim_root"], p.fingerprint_hex());
}

#[test]
fn evidence_from_an_unpinned_platform_is_refused() {
    let (p, other) = (platform(), platform());
    let ev = SimAttester::new(other, "executor", M1)
        .attest(&[0; 64])
        .expect("attest")
        .evidence;
    let err = verifier_for(&p)
        .verify(&ev, &Collateral::default(), now())
        .expect_err("unpinned");
    assert_eq!(err.code(), "untrusted_chain", "{err}");
}

#[test]
fn every_flipped_byte_is_refused() {
    let p = platform();
    let v = verifier_for(&p);
    let ev = SimAttester::new(p.clone(), "executor", M1)
        .attest(&[7; 64])
        .expect("attest")
        .evidence;
    for i in 0..ev.len() {
        let mut t = ev.clone();
        t[i] ^= 0x01;
        assert!(
            v.verify(&t, &Collateral::default(), now()).is_err(),
            "flipped byte {i} of {} accepted",
            ev.len()
        );
    }
    assert!(
        v.verify(&ev[..ev.len() - 1], &Collateral::default(), now())
            .is_err()
    );
}

#[test]
fn evidence_from_the_future_is_refused_and_old_evidence_fails_max_age() {
    let p = platform();
    let v = verifier_for(&p);
    let t = now();
    let future = p
        .sign_evidence(
            "executor",
            &M1,
            &[0; 64],
            u64::try_from((t + 3600) * 1000).expect("ms"),
        )
        .expect("sign");
    assert_eq!(
        v.verify(&future, &Collateral::default(), t)
            .expect_err("future")
            .code(),
        "inconsistent_evidence"
    );
    let old = p
        .sign_evidence(
            "executor",
            &M1,
            &[0; 64],
            u64::try_from((t - 600) * 1000).expect("ms"),
        )
        .expect("sign");
    let verified = v
        .verify(&old, &Collateral::default(), t)
        .expect("authentic");
    let policy = Policy::from_yaml("allow_simulated: true\nmax_age_seconds: 300").expect("policy");
    let rules: Vec<_> = policy
        .evaluate(&verified, t)
        .into_iter()
        .map(|v| v.rule)
        .collect();
    assert_eq!(rules, ["max_age_seconds"]);
}

#[test]
fn policy_refuses_sim_unless_allowed_and_checks_the_measurement() {
    let p = platform();
    let ev = SimAttester::new(p.clone(), "executor", M1)
        .attest(&[0; 64])
        .expect("attest")
        .evidence;
    let verified = verifier_for(&p)
        .verify(&ev, &Collateral::default(), now())
        .expect("verify");
    let strict = Policy::from_yaml("").expect("default");
    let rules: Vec<_> = strict
        .evaluate(&verified, now())
        .into_iter()
        .map(|v| v.rule)
        .collect();
    assert!(rules.contains(&"allow_simulated"), "{rules:?}");
    let ok = Policy::from_yaml(&format!(
        "allow_simulated: true\nallowed_measurements:\n  sim: [\"{}\"]",
        hex::encode(M1)
    ))
    .expect("policy");
    assert!(ok.evaluate(&verified, now()).is_empty());
    let other = Policy::from_yaml(&format!(
        "allow_simulated: true\nallowed_measurements:\n  sim: [\"{}\"]",
        hex::encode(M2)
    ))
    .expect("policy");
    let rules: Vec<_> = other
        .evaluate(&verified, now())
        .into_iter()
        .map(|v| v.rule)
        .collect();
    assert_eq!(rules, ["allowed_measurements"]);
}

#[test]
fn platform_persists_with_mode_0600_and_rejects_a_corrupt_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let (a, created) = SimPlatform::load_or_create(dir.path()).expect("create");
    assert!(created);
    let (b, created) = SimPlatform::load_or_create(dir.path()).expect("load");
    assert!(!created);
    assert_eq!(a.fingerprint_hex(), b.fingerprint_hex());
    assert_eq!(
        a.sealing_key(&M1, "root").expect("k"),
        b.sealing_key(&M1, "root").expect("k")
    );
    let path = dir.path().join("sim-platform.json");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A root that does not certify the stored key is refused.
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let other = SimPlatform::generate().expect("other");
    use base64::Engine;
    doc["root_cert"] = base64::engine::general_purpose::STANDARD
        .encode(other.root().der())
        .into();
    std::fs::write(&path, serde_json::to_vec(&doc).expect("json")).expect("write");
    assert!(SimPlatform::load_or_create(dir.path()).is_err());
    std::fs::write(&path, b"{").expect("write");
    let err = SimPlatform::load_or_create(dir.path()).expect_err("corrupt");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn sealing_keys_depend_on_platform_measurement_and_purpose() {
    let (p, q) = (platform(), platform());
    let k = p.sealing_key(&M1, "root").expect("k");
    assert_ne!(k, p.sealing_key(&M2, "root").expect("k"));
    assert_ne!(k, p.sealing_key(&M1, "other").expect("k"));
    assert_ne!(k, q.sealing_key(&M1, "root").expect("k"));
}

#[test]
fn measure_depends_on_the_executable() {
    let a = measure(&mut &b"exe-v1"[..], "executor", &[0; 32]).expect("m");
    let b = measure(&mut &b"exe-v2"[..], "executor", &[0; 32]).expect("m");
    assert_ne!(a, b);
}

#[test]
fn strict_decoding() {
    let p = platform();
    let ev = p.sign_evidence("executor", &M1, &[1; 64], 1).expect("sign");
    let parsed = SimEvidence::parse(&ev).expect("parse");
    assert_eq!(parsed.role, "executor");
    assert_eq!(parsed.timestamp_ms, 1);
    assert!(SimEvidence::parse(b"").is_err());
    assert!(SimEvidence::parse(&ev[1..]).is_err(), "untagged is refused");
    let too_long = "x".repeat(65);
    let ev = p.sign_evidence(&too_long, &M1, &[1; 64], 1).expect("sign");
    assert!(SimEvidence::parse(&ev).is_err());
}
