//! Sim evidence decoding (COSE_Sign1 + strict CBOR map) and verification against a fixed root.
#![no_main]
use cloister_attest::sim::{SimEvidence, SimPlatform, SimVerifier};
use cloister_attest::{Collateral, Verifier};
use libfuzzer_sys::fuzz_target;

/// One platform for the whole run, so inputs signed by it (from the seed corpus) verify.
fn verifier() -> Option<&'static SimVerifier> {
    static V: std::sync::OnceLock<Option<SimVerifier>> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let p = SimPlatform::generate().ok()?;
        SimVerifier::pinning(p.root().der()).ok()
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = SimEvidence::parse(data) {
        let _ = ev.claims();
    }
    if let Some(v) = verifier() {
        let _ = v.verify(data, &Collateral::default(), 1_800_000_000);
    }
});
