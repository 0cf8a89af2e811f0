//! Certificate and CRL parsing (DER and PEM) and chain checks against the embedded roots.
#![no_main]
use cloister_attest::x509::{parse_certs, parse_crls, verify_chain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let crls = parse_crls(data).unwrap_or_default();
    if let Ok(certs) = parse_certs(data) {
        for c in &certs {
            let _ = c.summary();
            let _ = c.ca_constraint();
        }
        if let Ok(store) = cloister_attest::TrustStore::builtin() {
            let _ = verify_chain(&certs, &store.intel, 1_750_000_000, &crls);
        }
    }
});
