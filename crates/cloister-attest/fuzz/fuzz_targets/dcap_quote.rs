//! DCAP quote decoding (SGX v3 and TDX v4/v5 layouts, size cross-checks).
#![no_main]
use cloister_attest::TeeType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for tee in [TeeType::Sgx, TeeType::Tdx] {
        if let Ok(q) = cloister_attest::dcap::DcapQuote::parse(data, tee) {
            let _ = q.claims();
        }
    }
});
