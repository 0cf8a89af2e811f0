//! Text-encoding detection and format detection, then inspection by the detected verifier.
#![no_main]
use libfuzzer_sys::fuzz_target;


/// Built once: parsing the embedded roots on every input would dominate the run.
fn store() -> Option<&'static cloister_attest::TrustStore> {
    static STORE: std::sync::OnceLock<Option<cloister_attest::TrustStore>> = std::sync::OnceLock::new();
    STORE.get_or_init(|| cloister_attest::TrustStore::builtin().ok()).as_ref()
}

fuzz_target!(|data: &[u8]| {
    let bytes = cloister_attest::decode_text_or_binary(data);
    if let Some(store) = store() {
        let set = cloister_attest::VerifierSet::new(store);
        if let Ok(v) = set.for_evidence(&bytes, None) {
            let _ = v.inspect(&bytes);
        }
    }
});
