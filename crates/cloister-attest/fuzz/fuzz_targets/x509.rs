//! Certificate and CRL parsing (DER and PEM) and chain checks against the embedded roots.
#![no_main]
use cloister_attest::x509::{parse_certs, parse_crls, verify_chain};
use libfuzzer_sys::fuzz_target;


/// Built once: parsing the embedded roots on every input would dominate the run.
fn store() -> Option<&'static cloister_attest::TrustStore> {
    static STORE: std::sync::OnceLock<Option<cloister_attest::TrustStore>> = std::sync::OnceLock::new();
    STORE.get_or_init(|| cloister_attest::TrustStore::builtin().ok()).as_ref()
}

fuzz_target!(|data: &[u8]| {
    let crls = parse_crls(data).unwrap_or_default();
    if let Ok(certs) = parse_certs(data) {
        for c in &certs {
            let _ = c.summary();
            let _ = c.ca_constraint();
        }
        if let Some(store) = store() {
            let _ = verify_chain(&certs, &store.intel, 1_750_000_000, &crls);
        }
    }
});
