//! Online collateral fetching against a local fake AMD KDS / Intel PCS: exact request URLs,
//! verification of what was fetched, the on-disk cache, and failure modes. No network.

mod common;

use cloister_attest::dcap::{DcapQuote, parse_collateral};
use cloister_attest::fetch::fake::{FakeServer, Route};
use cloister_attest::fetch::{DiskCache, Endpoints, Fetcher, Freshness, HttpResponse, UreqClient};
use cloister_attest::snp::SnpReport;
use cloister_attest::{AttestError, TeeType, Verifier};
use common::*;
use std::time::Duration;

const MILAN_CHIP: &str = "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6";
const GENOA_CHIP: &str = "0506ffba875e939c2729d20c74eb72b4c5ba6bf7ea1faaa640141f12c6d64782fb487f68ce69dcd021e914cc0d9244327bc121f0242d6470903ad1d4aaea4ad1";
const NOW: i64 = 1_800_000_000;

fn fetcher(server: &FakeServer, cache: Option<&std::path::Path>) -> Fetcher {
    let endpoints = Endpoints {
        amd_kds: server.url(),
        intel_pcs: format!("{}/pcs/", server.url()),
        intel_root_crl: format!("{}/IntelSGXRootCA.der", server.url()),
    };
    let f = Fetcher::new(
        Box::new(UreqClient::new(Duration::from_secs(10))),
        endpoints,
    );
    match cache {
        Some(dir) => f.with_cache(DiskCache::new(dir), 3600),
        None => f,
    }
}

fn milan_vcek_path() -> String {
    format!("/vcek/v1/Milan/{MILAN_CHIP}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115")
}

fn dcap_only(c: dcap_qvl::QuoteCollateralV3) -> cloister_attest::Collateral {
    cloister_attest::Collateral {
        dcap: Some(c),
        ..Default::default()
    }
}

fn snp_verifier() -> std::sync::Arc<dyn Verifier> {
    verifiers().get(TeeType::SevSnp).expect("snp").clone()
}

#[test]
fn snp_vcek_is_fetched_from_the_exact_kds_url_and_verifies() {
    let server = FakeServer::start().expect("server");
    server.route(&milan_vcek_path(), Route::ok(raw(SNP_MILAN_VCEK)));
    let report = SnpReport::parse(&evidence(SNP_MILAN)).expect("report");
    let got = fetcher(&server, None)
        .snp_collateral(&report, NOW)
        .expect("fetch");
    assert_eq!(
        got.sources.len(),
        1,
        "only what was obtained: {:?}",
        got.sources
    );
    assert!(!got.sources[0].cached);
    assert_eq!(
        server.requests(),
        vec![milan_vcek_path(), "/vcek/v1/Milan/crl".to_owned()]
    );
    // No CRL on this server: a warning, never a silent pass.
    assert!(
        got.warnings
            .iter()
            .any(|w| w.contains("revocation not checked")),
        "{:?}",
        got.warnings
    );
    let v = snp_verifier()
        .verify(&evidence(SNP_MILAN), &got.value, at(SNP_MILAN_AT))
        .expect("verifies with the fetched VCEK");
    assert_eq!(
        v.claims().measurement.to_hex(),
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
}

#[test]
fn snp_v3_report_asks_its_own_product_line_only() {
    let server = FakeServer::start().expect("server");
    let path = format!("/vcek/v1/Genoa/{GENOA_CHIP}?blSPL=10&teeSPL=0&snpSPL=23&ucodeSPL=84");
    server.route(&path, Route::ok(raw(SNP_GENOA_VCEK)));
    let report = SnpReport::parse(&evidence(SNP_GENOA)).expect("report");
    assert_eq!(report.product_line(), Some("Genoa"));
    let got = fetcher(&server, None)
        .snp_collateral(&report, NOW)
        .expect("fetch");
    assert_eq!(server.requests()[0], path);
    snp_verifier()
        .verify(&evidence(SNP_GENOA), &got.value, at(SNP_GENOA_AT))
        .expect("verifies");
}

#[test]
fn snp_unknown_chip_probes_every_product_line_then_fails_typed() {
    let server = FakeServer::start().expect("server");
    let report = SnpReport::parse(&evidence(SNP_MILAN)).expect("report");
    let err = fetcher(&server, None)
        .snp_collateral(&report, NOW)
        .expect_err("nothing served");
    assert_eq!(err.code(), "collateral_unavailable");
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert!(reqs[0].starts_with("/vcek/v1/Milan/"));
    assert!(reqs[1].starts_with("/vcek/v1/Genoa/"));
    // Turin names the chip by its first 8 bytes and adds the FMC SPL.
    assert_eq!(
        reqs[2],
        format!(
            "/vcek/v1/Turin/{}?fmcSPL=0&blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
            &MILAN_CHIP[..16]
        )
    );
}

#[test]
fn snp_server_error_is_not_retried_as_another_product() {
    let server = FakeServer::start().expect("server");
    let mut route = Route::ok("boom");
    route.status = 503;
    server.route(&milan_vcek_path(), route);
    let report = SnpReport::parse(&evidence(SNP_MILAN)).expect("report");
    let err = fetcher(&server, None)
        .snp_collateral(&report, NOW)
        .expect_err("503");
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn snp_garbage_crl_is_an_error_not_a_warning() {
    let server = FakeServer::start().expect("server");
    server.route(&milan_vcek_path(), Route::ok(raw(SNP_MILAN_VCEK)));
    server.route("/vcek/v1/Milan/crl", Route::ok(b"not a CRL".to_vec()));
    let report = SnpReport::parse(&evidence(SNP_MILAN)).expect("report");
    let err = fetcher(&server, None)
        .snp_collateral(&report, NOW)
        .expect_err("bad CRL");
    assert_eq!(err.code(), "bad_collateral", "{err}");
}

#[test]
fn fetched_vcek_for_another_chip_is_rejected_by_verification() {
    let server = FakeServer::start().expect("server");
    // A malicious or confused KDS mirror returns Genoa's VCEK for the Milan chip.
    server.route(&milan_vcek_path(), Route::ok(raw(SNP_GENOA_VCEK)));
    let report = SnpReport::parse(&evidence(SNP_MILAN)).expect("report");
    let got = fetcher(&server, None)
        .snp_collateral(&report, NOW)
        .expect("fetch");
    assert!(
        snp_verifier()
            .verify(&evidence(SNP_MILAN), &got.value, at(SNP_GENOA_AT))
            .is_err()
    );
}

#[test]
fn vcek_is_served_from_disk_cache_when_the_service_is_gone() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = FakeServer::start().expect("server");
    server.route(&milan_vcek_path(), Route::ok(raw(SNP_MILAN_VCEK)));
    let report = SnpReport::parse(&evidence(SNP_MILAN)).expect("report");
    fetcher(&server, Some(dir.path()))
        .snp_collateral(&report, NOW)
        .expect("first fetch");
    server.clear_routes();
    let before = server.requests().len();
    // Years later: VCEKs are immutable, so the cache still answers.
    let got = fetcher(&server, Some(dir.path()))
        .snp_collateral(&report, NOW + 10 * 365 * 86400)
        .expect("cached");
    assert!(got.sources[0].cached);
    let after = server.requests();
    assert_eq!(after.len(), before + 1, "only the CRL is asked for again");
    assert_eq!(after[before], "/vcek/v1/Milan/crl");
    snp_verifier()
        .verify(&evidence(SNP_MILAN), &got.value, at(SNP_MILAN_AT))
        .expect("cached VCEK verifies");
}

#[test]
fn disk_cache_expiry_corruption_and_url_mismatch_are_misses() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = DiskCache::new(dir.path());
    let resp = HttpResponse {
        status: 200,
        headers: [("x-a".to_owned(), "b".to_owned())].into(),
        body: b"hello".to_vec(),
    };
    cache.put("http://x/a", &resp, 1000).expect("put");
    assert_eq!(
        cache.get("http://x/a", Freshness::MaxAge(60), 1060),
        Some(resp.clone())
    );
    assert_eq!(
        cache.get("http://x/a", Freshness::MaxAge(60), 1061),
        None,
        "expired"
    );
    assert_eq!(
        cache.get("http://x/a", Freshness::MaxAge(60), 999),
        None,
        "from the future"
    );
    assert!(
        cache
            .get("http://x/a", Freshness::Immutable, 10_000_000)
            .is_some()
    );
    assert_eq!(cache.get("http://x/b", Freshness::Immutable, 1000), None);
    // Corrupt every file: a miss, not a panic or garbage.
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        std::fs::write(entry.expect("entry").path(), b"{ truncated").expect("write");
    }
    assert_eq!(cache.get("http://x/a", Freshness::Immutable, 1000), None);
}

/// Serves `collateral` (the JSON bundle format) the way Intel PCS does for `tee`.
fn serve_pcs(server: &FakeServer, tee: &str, fmspc: &str, ca: &str, collateral: &str) {
    let c = parse_collateral(&raw(collateral)).expect("collateral");
    let enc = |s: &str| urlencoding::encode(s).into_owned();
    server.route(
        &format!("/pcs/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"),
        Route::ok(c.pck_crl.clone())
            .header("SGX-PCK-CRL-Issuer-Chain", &enc(&c.pck_crl_issuer_chain)),
    );
    let tcb = format!(
        "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
        c.tcb_info,
        hex::encode(&c.tcb_info_signature)
    );
    server.route(
        &format!("/pcs/{tee}/certification/v4/tcb?fmspc={fmspc}"),
        Route::ok(tcb).header("TCB-Info-Issuer-Chain", &enc(&c.tcb_info_issuer_chain)),
    );
    let qe = format!(
        "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
        c.qe_identity,
        hex::encode(&c.qe_identity_signature)
    );
    server.route(
        &format!("/pcs/{tee}/certification/v4/qe/identity"),
        Route::ok(qe).header(
            "SGX-Enclave-Identity-Issuer-Chain",
            &enc(&c.qe_identity_issuer_chain),
        ),
    );
    server.route("/IntelSGXRootCA.der", Route::ok(c.root_ca_crl.clone()));
}

#[test]
fn sgx_collateral_is_fetched_from_pcs_and_verifies() {
    let server = FakeServer::start().expect("server");
    serve_pcs(&server, "sgx", "00a067110000", "processor", SGX_COLLATERAL);
    let quote = DcapQuote::parse(&evidence(SGX), TeeType::Sgx).expect("quote");
    let got = fetcher(&server, None)
        .dcap_collateral(&quote, NOW)
        .expect("fetch");
    assert_eq!(got.sources.len(), 4);
    let coll = dcap_only(got.value);
    let v = verifiers()
        .get(TeeType::Sgx)
        .expect("sgx")
        .verify(&evidence(SGX), &coll, at(SGX_AT))
        .expect("verifies with fetched collateral");
    assert_eq!(
        v.claims().tcb_status.as_deref(),
        Some("ConfigurationAndSWHardeningNeeded")
    );
}

#[test]
fn tdx_collateral_uses_the_tdx_paths() {
    let server = FakeServer::start().expect("server");
    let quote = DcapQuote::parse(&evidence(TDX), TeeType::Tdx).expect("quote");
    let fmspc = hex::encode(dcap_qvl::intel::quote_fmspc(quote.quote()).expect("fmspc"));
    let ca = dcap_qvl::intel::quote_ca(quote.quote())
        .expect("ca")
        .as_id_str();
    serve_pcs(&server, "tdx", &fmspc, ca, TDX_COLLATERAL);
    let got = fetcher(&server, None)
        .dcap_collateral(&quote, NOW)
        .expect("fetch");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.starts_with("/pcs/tdx/certification/v4/tcb?fmspc="))
    );
    let coll = dcap_only(got.value);
    verifiers()
        .get(TeeType::Tdx)
        .expect("tdx")
        .verify(&evidence(TDX), &coll, at(TDX_AT))
        .expect("verifies");
}

#[test]
fn tampered_tcb_info_from_the_network_fails_verification() {
    let server = FakeServer::start().expect("server");
    serve_pcs(&server, "sgx", "00a067110000", "processor", SGX_COLLATERAL);
    let c = parse_collateral(&raw(SGX_COLLATERAL)).expect("collateral");
    let forged = c.tcb_info.replacen("OutOfDate", "UpToDate", 1);
    assert_ne!(forged, c.tcb_info, "sample has an OutOfDate level to forge");
    server.route(
        "/pcs/sgx/certification/v4/tcb?fmspc=00a067110000",
        Route::ok(format!(
            "{{\"tcbInfo\":{forged},\"signature\":\"{}\"}}",
            hex::encode(&c.tcb_info_signature)
        ))
        .header(
            "TCB-Info-Issuer-Chain",
            &urlencoding::encode(&c.tcb_info_issuer_chain),
        ),
    );
    let quote = DcapQuote::parse(&evidence(SGX), TeeType::Sgx).expect("quote");
    let got = fetcher(&server, None)
        .dcap_collateral(&quote, NOW)
        .expect("fetch");
    let coll = dcap_only(got.value);
    let err: AttestError = verifiers()
        .get(TeeType::Sgx)
        .expect("sgx")
        .verify(&evidence(SGX), &coll, at(SGX_AT))
        .expect_err("forged TCB info");
    assert_eq!(err.code(), "dcap_rejected", "{err}");
}

#[test]
fn pcs_response_without_issuer_chain_header_is_bad_collateral() {
    let server = FakeServer::start().expect("server");
    serve_pcs(&server, "sgx", "00a067110000", "processor", SGX_COLLATERAL);
    let c = parse_collateral(&raw(SGX_COLLATERAL)).expect("collateral");
    server.route(
        "/pcs/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
        Route::ok(c.pck_crl),
    );
    let quote = DcapQuote::parse(&evidence(SGX), TeeType::Sgx).expect("quote");
    let err = fetcher(&server, None)
        .dcap_collateral(&quote, NOW)
        .expect_err("no header");
    assert_eq!(err.code(), "bad_collateral");
    assert!(
        err.to_string().contains("SGX-PCK-CRL-Issuer-Chain"),
        "{err}"
    );
}
