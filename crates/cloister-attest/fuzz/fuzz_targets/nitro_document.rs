//! Nitro COSE_Sign1/CBOR decoding and full verification at a fixed time.
#![no_main]
use cloister_attest::{Collateral, Verifier, nitro::NitroVerifier};
use libfuzzer_sys::fuzz_target;


/// Built once: parsing the embedded roots on every input would dominate the run.
fn store() -> Option<&'static cloister_attest::TrustStore> {
    static STORE: std::sync::OnceLock<Option<cloister_attest::TrustStore>> = std::sync::OnceLock::new();
    STORE.get_or_init(|| cloister_attest::TrustStore::builtin().ok()).as_ref()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = cloister_attest::nitro::NitroDocument::parse(data) {
        let _ = doc.claims();
    }
    if let Some(store) = store() {
        let v = NitroVerifier::new(store.nitro.clone());
        let _ = v.verify(data, &Collateral::default(), 1_665_651_600);
    }
});
