//! Text-encoding detection and format detection, then inspection by the detected verifier.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = cloister_attest::decode_text_or_binary(data);
    if let Ok(store) = cloister_attest::TrustStore::builtin() {
        let set = cloister_attest::VerifierSet::new(&store);
        if let Ok(v) = set.for_evidence(&bytes, None) {
            let _ = v.inspect(&bytes);
        }
    }
});
