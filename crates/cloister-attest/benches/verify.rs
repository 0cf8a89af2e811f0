//! Cold verification of each real sample, and a cache hit (`cargo bench -p cloister-attest`).

use cloister_attest::cache::VerificationCache;
use cloister_attest::time_fmt::parse_rfc3339;
use cloister_attest::x509::parse_certs;
use cloister_attest::{Collateral, Policy, TrustStore, VerifierSet, decode_text_or_binary};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).expect("sample")
}

fn samples() -> Vec<(&'static str, Vec<u8>, Collateral, i64)> {
    let snp = |vcek: &str| Collateral {
        certs: parse_certs(&file(vcek)).expect("vcek"),
        ..Collateral::default()
    };
    let dcap = |json: &str| Collateral {
        dcap: Some(cloister_attest::dcap::parse_collateral(&file(json)).expect("collateral")),
        ..Collateral::default()
    };
    let at = |s: &str| parse_rfc3339(s).expect("time");
    vec![
        (
            "nitro",
            file("nitro/nitro_evervault_2022-10-13_prod.cbor"),
            Collateral::default(),
            at("2022-10-13T09:00:00Z"),
        ),
        (
            "sev-snp-milan",
            file("sev-snp/snp_milan_virtee_report.bin"),
            snp("sev-snp/snp_milan_virtee_vcek.der"),
            at("2024-01-01T00:00:00Z"),
        ),
        (
            "sev-snp-genoa",
            file("sev-snp/snp_genoa_azure_report.bin"),
            snp("sev-snp/snp_genoa_azure_vcek.pem"),
            at("2025-06-01T00:00:00Z"),
        ),
        (
            "sgx",
            file("sgx-dcap/sgx_v3_quote.bin"),
            dcap("sgx-dcap/sgx_v3_collateral.json"),
            at("2025-07-19T10:01:17Z"),
        ),
        (
            "tdx",
            file("tdx-dcap/tdx_v4_quote.bin"),
            dcap("tdx-dcap/tdx_v4_collateral.json"),
            at("2025-07-19T10:00:34Z"),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let set = VerifierSet::new(&TrustStore::builtin().expect("roots"));
    let policy = Policy::from_yaml("allow_debug: false").expect("policy");
    for (name, raw, collateral, now) in samples() {
        let evidence = decode_text_or_binary(&raw);
        let verifier = set.for_evidence(&evidence, None).expect("format");
        c.bench_function(&format!("cold_verify/{name}"), |b| {
            b.iter(|| {
                verifier
                    .verify(black_box(&evidence), &collateral, now)
                    .expect("verifies")
            })
        });
        let cache = VerificationCache::new(3600, 1024);
        cache
            .verify(verifier.as_ref(), &evidence, &collateral, &policy, now)
            .expect("verifies");
        c.bench_function(&format!("cache_hit/{name}"), |b| {
            b.iter(|| {
                cache
                    .verify(
                        verifier.as_ref(),
                        black_box(&evidence),
                        &collateral,
                        &policy,
                        now,
                    )
                    .expect("hit")
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
