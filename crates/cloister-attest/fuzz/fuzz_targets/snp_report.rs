//! SEV-SNP report decoding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = cloister_attest::snp::SnpReport::parse(data) {
        let _ = report.claims("fuzz");
    }
});
