//! Nitro COSE_Sign1/CBOR decoding and full verification at a fixed time.
#![no_main]
use cloister_attest::{Collateral, TrustStore, Verifier, nitro::NitroVerifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = cloister_attest::nitro::NitroDocument::parse(data) {
        let _ = doc.claims();
    }
    if let Ok(store) = TrustStore::builtin() {
        let v = NitroVerifier::new(store.nitro);
        let _ = v.verify(data, &Collateral::default(), 1_665_651_600);
    }
});
