//! Shared helpers: load the real evidence samples and pin verification times.
#![allow(dead_code)]

use cloister_attest::time_fmt::parse_rfc3339;
use cloister_attest::x509::{UnixSecs, parse_certs};
use cloister_attest::{Collateral, TrustStore, VerifierSet, decode_text_or_binary};

pub const NITRO_PROD: &str = "nitro/nitro_evervault_2022-10-13_prod.cbor";
pub const NITRO_DEBUG: &str = "nitro/nitro_evervault_2023-09-18_debug.cbor.b64";
pub const SNP_MILAN: &str = "sev-snp/snp_milan_virtee_report.bin";
pub const SNP_MILAN_VCEK: &str = "sev-snp/snp_milan_virtee_vcek.der";
pub const SNP_MILAN_ASK_ARK: &str = "sev-snp/snp_milan_virtee_ask_ark.pem";
pub const SNP_GENOA: &str = "sev-snp/snp_genoa_azure_report.bin";
pub const SNP_GENOA_VCEK: &str = "sev-snp/snp_genoa_azure_vcek.pem";
pub const SGX: &str = "sgx-dcap/sgx_v3_quote.bin";
pub const SGX_COLLATERAL: &str = "sgx-dcap/sgx_v3_collateral.json";
pub const TDX: &str = "tdx-dcap/tdx_v4_quote.bin";
pub const TDX_COLLATERAL: &str = "tdx-dcap/tdx_v4_collateral.json";

pub const NITRO_PROD_AT: &str = "2022-10-13T09:00:00Z";
pub const NITRO_DEBUG_AT: &str = "2023-09-18T15:05:00Z";
pub const SNP_MILAN_AT: &str = "2024-01-01T00:00:00Z";
pub const SNP_GENOA_AT: &str = "2025-06-01T00:00:00Z";
pub const SGX_AT: &str = "2025-07-19T10:01:17Z";
pub const TDX_AT: &str = "2025-07-19T10:00:34Z";

pub fn raw(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn evidence(name: &str) -> Vec<u8> {
    decode_text_or_binary(&raw(name))
}

pub fn at(s: &str) -> UnixSecs {
    parse_rfc3339(s).expect("test time")
}

pub fn verifiers() -> VerifierSet {
    VerifierSet::new(&TrustStore::builtin().expect("builtin roots"))
}

pub fn snp_collateral(vcek: &str) -> Collateral {
    Collateral {
        certs: parse_certs(&raw(vcek)).expect("vcek"),
        ..Collateral::default()
    }
}

pub fn dcap_collateral(json: &str) -> Collateral {
    Collateral {
        dcap: Some(cloister_attest::dcap::parse_collateral(&raw(json)).expect("collateral")),
        ..Collateral::default()
    }
}

/// (evidence file, collateral, pinned time) for every sample.
pub fn all_samples() -> Vec<(&'static str, Collateral, UnixSecs)> {
    vec![
        (NITRO_PROD, Collateral::default(), at(NITRO_PROD_AT)),
        (NITRO_DEBUG, Collateral::default(), at(NITRO_DEBUG_AT)),
        (SNP_MILAN, snp_collateral(SNP_MILAN_VCEK), at(SNP_MILAN_AT)),
        (SNP_GENOA, snp_collateral(SNP_GENOA_VCEK), at(SNP_GENOA_AT)),
        (SGX, dcap_collateral(SGX_COLLATERAL), at(SGX_AT)),
        (TDX, dcap_collateral(TDX_COLLATERAL), at(TDX_AT)),
    ]
}
