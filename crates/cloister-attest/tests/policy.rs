//! Policy loading (precise errors) and evaluation (every violated rule) on real evidence.

mod common;
use cloister_attest::cache::{Lookup, VerificationCache};
use cloister_attest::{Policy, PolicyError, Verified};
use common::*;

fn verified(name: &str) -> (Verified, i64) {
    let (_, collateral, now) = all_samples()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .unwrap();
    let bytes = evidence(name);
    let set = verifiers();
    (
        set.for_evidence(&bytes, None)
            .unwrap()
            .verify(&bytes, &collateral, now)
            .unwrap(),
        now,
    )
}

fn rules(policy: &Policy, name: &str) -> Vec<&'static str> {
    let (v, now) = verified(name);
    policy
        .evaluate(&v, now)
        .into_iter()
        .map(|v| v.rule)
        .collect()
}

const MILAN_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

#[test]
fn the_documented_shape_loads_and_accepts_matching_evidence() {
    let policy = Policy::from_yaml(&format!(
        "allow_debug: false\nallowed_tee_types: [nitro, sev-snp, sgx, tdx]\nallowed_tcb_statuses: [UpToDate]\n\
         allowed_measurements:\n  sev-snp: [\"{MILAN_MEASUREMENT}\"]\nmax_age_seconds: 300\n"
    ))
    .unwrap();
    assert!(rules(&policy, SNP_MILAN).is_empty());
}

#[test]
fn an_empty_policy_checks_debug_and_tcb_status_only() {
    let policy = Policy::from_yaml("").unwrap();
    for name in [NITRO_PROD, SNP_MILAN, SNP_GENOA, TDX] {
        assert!(rules(&policy, name).is_empty(), "{name}");
    }
    assert_eq!(rules(&policy, NITRO_DEBUG), ["allow_debug"]);
    assert_eq!(rules(&policy, SGX), ["allowed_tcb_statuses"]);
    let lenient =
        Policy::from_yaml("allowed_tcb_statuses: [UpToDate, ConfigurationAndSWHardeningNeeded]")
            .unwrap();
    assert!(rules(&lenient, SGX).is_empty());
    let debug_ok = Policy::from_yaml("allow_debug: true").unwrap();
    assert!(rules(&debug_ok, NITRO_DEBUG).is_empty());
}

#[test]
fn a_measurement_not_on_the_allowlist_is_rejected() {
    let other = "00".repeat(48);
    let policy = Policy::from_yaml(&format!(
        "allowed_measurements:\n  sev-snp: [\"{other}\"]\n"
    ))
    .unwrap();
    let (v, now) = verified(SNP_MILAN);
    let violations = policy.evaluate(&v, now);
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].rule, "allowed_measurements");
    assert!(violations[0].message.contains(MILAN_MEASUREMENT));
}

#[test]
fn a_tee_type_without_an_allowlist_entry_is_rejected_when_any_allowlist_is_given() {
    let policy = Policy::from_yaml(&format!(
        "allowed_measurements:\n  sev-snp: [\"{MILAN_MEASUREMENT}\"]\n"
    ))
    .unwrap();
    assert_eq!(rules(&policy, TDX), ["allowed_measurements"]);
    assert_eq!(rules(&policy, NITRO_PROD), ["allowed_measurements"]);
}

#[test]
fn every_violated_rule_is_reported() {
    let policy = Policy::from_yaml(
        "allowed_tee_types: [sev-snp]\nallowed_measurements:\n  nitro: [\"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\"]\n\
         max_age_seconds: 60\nmin_svns: {guest_svn: 1}\nreport_data_prefix: \"abcd\"\n",
    )
    .unwrap();
    let (v, _) = verified(NITRO_DEBUG);
    // Ten minutes after the document was produced.
    let now = v.claims().timestamp.unwrap() + 600;
    let got: Vec<_> = policy
        .evaluate(&v, now)
        .into_iter()
        .map(|v| v.rule)
        .collect();
    assert_eq!(
        got,
        [
            "allowed_tee_types",
            "allow_debug",
            "allowed_measurements",
            "max_age_seconds",
            "min_svns",
            "report_data_prefix"
        ]
    );
}

#[test]
fn max_age_applies_to_timestamped_evidence() {
    let policy = Policy::from_yaml("max_age_seconds: 300").unwrap();
    let (v, _) = verified(NITRO_PROD);
    let ts = v.claims().timestamp.unwrap();
    assert!(policy.evaluate(&v, ts + 120).is_empty());
    assert_eq!(policy.evaluate(&v, ts + 301)[0].rule, "max_age_seconds");
    assert_eq!(policy.evaluate(&v, ts - 3600)[0].rule, "max_age_seconds");
}

#[test]
fn min_svns_and_report_data_binding_are_checked() {
    let ok = Policy::from_yaml(
        "min_svns: {tcb_snp: 8, tcb_microcode: 115}\nreport_data_prefix: \"d447b55d\"",
    )
    .unwrap();
    assert!(rules(&ok, SNP_MILAN).is_empty());
    let too_new = Policy::from_yaml("min_svns: {tcb_snp: 9}").unwrap();
    assert_eq!(rules(&too_new, SNP_MILAN), ["min_svns"]);
    let other_binding = Policy::from_yaml("report_data_prefix: \"d447b55e\"").unwrap();
    assert_eq!(rules(&other_binding, SNP_MILAN), ["report_data_prefix"]);
    let bound = Policy::from_yaml("")
        .unwrap()
        .with_report_data_prefix(b"Hello, world!");
    let lenient =
        Policy::from_yaml("allowed_tcb_statuses: [ConfigurationAndSWHardeningNeeded]").unwrap();
    assert!(rules(&lenient.with_report_data_prefix(b"Hello, world!"), SGX).is_empty());
    assert_eq!(rules(&bound, TDX), ["report_data_prefix"]);
}

#[test]
fn load_errors_are_precise() {
    let err = |yaml: &str| Policy::from_yaml(yaml).unwrap_err();
    match err("allow_debug: false\nallowed_tee_typos: [nitro]\n") {
        PolicyError::Syntax(m) => assert!(
            m.contains("allowed_tee_typos") && m.contains("line 2"),
            "{m}"
        ),
        other => panic!("{other}"),
    }
    match err("allowed_tee_types: [nitro, amd]\n") {
        PolicyError::Syntax(m) => assert!(m.contains("amd"), "{m}"),
        other => panic!("{other}"),
    }
    assert_eq!(
        err("allowed_measurements:\n  sgx: [\"zz\"]\n"),
        PolicyError::Invalid {
            at: "allowed_measurements.sgx[0]".into(),
            message: "not hex: Invalid character 'z' at position 0".into()
        }
    );
    match err("allowed_measurements:\n  sev-snp: [\"abcd\"]\n") {
        PolicyError::Invalid { at, message } => {
            assert_eq!(at, "allowed_measurements.sev-snp[0]");
            assert!(message.contains("48 bytes"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert!(
        matches!(err("allowed_tcb_statuses: [UpToDat]"), PolicyError::Invalid { at, .. } if at == "allowed_tcb_statuses[0]")
    );
    assert!(
        matches!(err("allowed_tee_types: [sim]"), PolicyError::Invalid { at, .. } if at == "allowed_tee_types")
    );
    assert!(matches!(
        err("allowed_tee_types: []"),
        PolicyError::Invalid { .. }
    ));
    assert!(matches!(
        err("max_age_seconds: 0"),
        PolicyError::Invalid { .. }
    ));
    assert!(matches!(err("allow_debug: maybe"), PolicyError::Syntax(_)));
    assert!(Policy::from_yaml("allow_simulated: true\nallowed_tee_types: [sim]").is_ok());
}

#[test]
fn the_digest_changes_with_the_policy() {
    let a = Policy::from_yaml("allow_debug: false").unwrap();
    let b = Policy::from_yaml("allow_debug: true").unwrap();
    let a2 = Policy::from_yaml("allow_debug: false\n").unwrap();
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.digest(), a2.digest());
}

#[test]
fn the_cache_hits_until_expiry_and_a_policy_change_misses() {
    let (_, collateral, now) = all_samples()
        .into_iter()
        .find(|(n, _, _)| *n == NITRO_PROD)
        .unwrap();
    let bytes = evidence(NITRO_PROD);
    let set = verifiers();
    let verifier = set.for_evidence(&bytes, None).unwrap();
    let cache = VerificationCache::new(600, 100);
    let strict = Policy::from_yaml("").unwrap();
    let (_, _, first) = cache
        .verify(verifier.as_ref(), &bytes, &collateral, &strict, now)
        .unwrap();
    let (v, violations, second) = cache
        .verify(verifier.as_ref(), &bytes, &collateral, &strict, now + 1)
        .unwrap();
    assert_eq!((first, second), (Lookup::Miss, Lookup::Hit));
    assert!(violations.is_empty());
    // A different policy is a different key.
    let other = Policy::from_yaml("allow_debug: true").unwrap();
    assert_eq!(
        cache
            .verify(verifier.as_ref(), &bytes, &collateral, &other, now + 2)
            .unwrap()
            .2,
        Lookup::Miss
    );
    // The policy is evaluated on hits too.
    let aged = Policy::from_yaml("max_age_seconds: 60").unwrap();
    cache
        .verify(verifier.as_ref(), &bytes, &collateral, &aged, now)
        .unwrap();
    let (_, violations, hit) = cache
        .verify(verifier.as_ref(), &bytes, &collateral, &aged, now + 500)
        .unwrap();
    assert_eq!((hit, violations[0].rule), (Lookup::Hit, "max_age_seconds"));
    // After the TTL the entry is not used.
    assert_eq!(
        cache
            .verify(verifier.as_ref(), &bytes, &collateral, &strict, now + 601)
            .unwrap()
            .2,
        Lookup::Miss
    );
    // After the chain expires the evidence is re-verified, and now fails.
    let expired = v.valid_until() + 1;
    assert!(
        cache
            .verify(verifier.as_ref(), &bytes, &collateral, &strict, expired)
            .is_err()
    );
}

#[test]
fn the_cache_expires_at_the_certificate_expiry_before_the_ttl() {
    let (_, collateral, now) = all_samples()
        .into_iter()
        .find(|(n, _, _)| *n == NITRO_PROD)
        .unwrap();
    let bytes = evidence(NITRO_PROD);
    let set = verifiers();
    let verifier = set.for_evidence(&bytes, None).unwrap();
    let cache = VerificationCache::new(86_400, 100);
    let policy = Policy::from_yaml("").unwrap();
    let (v, _, _) = cache
        .verify(verifier.as_ref(), &bytes, &collateral, &policy, now)
        .unwrap();
    // Nitro chains live ~3 hours; a day-long TTL must not outlive them.
    assert!(v.valid_until() - now < 4 * 3600);
    assert!(
        cache
            .verify(
                verifier.as_ref(),
                &bytes,
                &collateral,
                &policy,
                v.valid_until() + 1
            )
            .is_err()
    );
}
