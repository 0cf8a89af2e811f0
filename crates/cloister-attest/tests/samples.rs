//! Every real evidence sample verifies at its pinned time and decodes to the README values.

mod common;
use cloister_attest::claims::TeeDetail;
use cloister_attest::{TeeType, Verified};
use common::*;

fn verify(name: &str) -> Verified {
    let (_, collateral, now) = all_samples()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .expect("known sample");
    let bytes = evidence(name);
    let set = verifiers();
    let verifier = set.for_evidence(&bytes, None).expect("format detected");
    verifier
        .verify(&bytes, &collateral, now)
        .unwrap_or_else(|e| panic!("{name} must verify: {e}"))
}

#[test]
fn every_sample_verifies_at_its_pinned_time() {
    for (name, collateral, now) in all_samples() {
        let bytes = evidence(name);
        let set = verifiers();
        let v = set.for_evidence(&bytes, None).unwrap();
        let verified = v
            .verify(&bytes, &collateral, now)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(verified.valid_until() >= now, "{name}");
        assert!(!verified.chain().is_empty(), "{name}");
    }
}

#[test]
fn nitro_prod_measurements_match_readme() {
    let v = verify(NITRO_PROD);
    let c = v.claims();
    assert_eq!(c.tee, TeeType::Nitro);
    assert!(!c.debug);
    assert_eq!(v.anchor(), "aws-nitro-root-g1");
    let TeeDetail::Nitro(d) = &c.detail else {
        panic!("nitro detail")
    };
    let pcr = |i: u8| d.pcrs[&i].to_hex();
    assert_eq!(
        pcr(0),
        "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b"
    );
    assert_eq!(
        pcr(1),
        "bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99aa19e6b29c37ee80b214a414b7607236edf26fcb78654e63f"
    );
    assert_eq!(
        pcr(2),
        "d8f114da658de5481f8d9ec73907feb553560787522f705c92d7d96beed8e15e2aa611984e098c576832c292e8dc469a"
    );
    assert_eq!(
        pcr(3),
        "4a9329d69c836267b18abbf9f4a38889124490453419e426818626348d21f989dc930b1562682a9082887454e53425aa"
    );
    assert_eq!(
        pcr(4),
        "1f442c86d494a88185642086d904ed89f62fb66ee9997d7b1a4f040faab3bba4244c768a584e5778195b3afc715637c6"
    );
    assert_eq!(
        pcr(8),
        "8790eb3cce6c83d07e84b126dc61ca923333d6f66615c4a79157de48c5ab2418bdc60746ea7b7afbff03a1c6210201cb"
    );
    for i in [5u8, 6, 7, 9, 10, 11, 12, 13, 14, 15] {
        assert!(d.pcrs[&i].is_zero(), "PCR{i}");
    }
    assert_eq!(c.measurement.to_hex(), pcr(0));
    assert_eq!(d.module_id, "i-020b6af9246d90e92-enc0183d09086c24190");
    assert_eq!(d.timestamp_ms, 1665651482136);
    assert!(d.user_data.is_none() && d.public_key.is_none());
    let nonce = d.nonce.as_ref().expect("nonce").to_hex();
    assert_eq!(nonce.len(), 512);
    assert!(nonce.starts_with("cb3dc2eb76c0c134"));
    // Leaf → 3 intermediates → root.
    assert_eq!(v.chain().len(), 5);
}

#[test]
fn nitro_debug_document_is_flagged_debug() {
    let v = verify(NITRO_DEBUG);
    let c = v.claims();
    assert!(c.debug);
    let TeeDetail::Nitro(d) = &c.detail else {
        panic!("nitro detail")
    };
    for i in [0u8, 1, 2, 8] {
        assert!(d.pcrs[&i].is_zero());
    }
    assert_eq!(
        d.pcrs[&4].to_hex(),
        "d0531b1400dd43288c82c226c16bf647c637dd5e4d9b4f7a8aaadc6d6760b854a06c7008cca0d15ca80094dd33a65065"
    );
    let user_data = d.user_data.as_ref().expect("user_data");
    assert_eq!(user_data.0.len(), 91);
    assert!(user_data.to_hex().starts_with("3059301306072a8648ce3d0201"));
    assert!(user_data.to_hex().ends_with("2acb"));
}

#[test]
fn snp_milan_matches_readme() {
    let v = verify(SNP_MILAN);
    let c = v.claims();
    assert_eq!(c.tee, TeeType::SevSnp);
    assert!(c.platform.starts_with("Milan"), "{}", c.platform);
    assert_eq!(v.anchor(), "amd-ark-milan");
    assert_eq!(
        c.measurement.to_hex(),
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(
        c.report_data.as_ref().unwrap().to_hex(),
        "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd"
    );
    assert!(!c.debug);
    let TeeDetail::SevSnp(d) = &c.detail else {
        panic!("snp detail")
    };
    assert_eq!(d.version, 2);
    assert_eq!(d.policy.raw, 0x30000);
    assert!(d.policy.smt && !d.policy.migrate_ma && !d.policy.debug);
    assert_eq!(d.signing_key, "vcek");
    assert_eq!(
        (
            d.reported_tcb.bootloader,
            d.reported_tcb.tee,
            d.reported_tcb.snp,
            d.reported_tcb.microcode
        ),
        (3, 0, 8, 115)
    );
    assert!(d.host_data.is_zero());
    assert_eq!(
        d.chip_id.to_hex(),
        "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6"
    );
    // VCEK → ASK → ARK.
    assert_eq!(v.chain().len(), 3);
    assert_eq!(v.chain()[0].serial, "00", "real VCEKs have serial number 0");
}

#[test]
fn snp_genoa_matches_readme() {
    let v = verify(SNP_GENOA);
    let c = v.claims();
    assert!(c.platform.starts_with("Genoa"), "{}", c.platform);
    assert_eq!(v.anchor(), "amd-ark-genoa");
    assert_eq!(
        c.measurement.to_hex(),
        "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae"
    );
    assert_eq!(
        c.report_data.as_ref().unwrap().to_hex(),
        format!(
            "b581f12e29a2d7d64e5e0b738d563879a78b51c644d0fa0cce02b48699f6bf5f{}",
            "0".repeat(64)
        )
    );
    let TeeDetail::SevSnp(d) = &c.detail else {
        panic!("snp detail")
    };
    assert_eq!(d.version, 3);
    assert_eq!(d.policy.raw, 0x3001f);
    assert_eq!(d.family_id.to_hex(), "01232000000000000000000000000000");
    assert_eq!(
        (
            d.reported_tcb.bootloader,
            d.reported_tcb.tee,
            d.reported_tcb.snp,
            d.reported_tcb.microcode
        ),
        (10, 0, 23, 84)
    );
    assert_eq!(
        d.chip_id.to_hex(),
        "0506ffba875e939c2729d20c74eb72b4c5ba6bf7ea1faaa640141f12c6d64782fb487f68ce69dcd021e914cc0d9244327bc121f0242d6470903ad1d4aaea4ad1"
    );
}

#[test]
fn sgx_matches_readme() {
    let v = verify(SGX);
    let c = v.claims();
    assert_eq!(c.tee, TeeType::Sgx);
    assert_eq!(v.anchor(), "intel-sgx-root-ca");
    assert_eq!(
        c.tcb_status.as_deref(),
        Some("ConfigurationAndSWHardeningNeeded")
    );
    assert_eq!(c.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert!(!c.debug);
    let TeeDetail::Sgx(d) = &c.detail else {
        panic!("sgx detail")
    };
    assert_eq!(
        d.mr_enclave.to_hex(),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        d.mr_signer.to_hex(),
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!((d.isv_prod_id, d.isv_svn), (0, 0));
    assert_eq!(d.attributes.to_hex(), "0500000000000000e700000000000000");
    assert!(
        c.report_data
            .as_ref()
            .unwrap()
            .to_hex()
            .starts_with("48656c6c6f2c20776f726c6421000000")
    );
    assert_eq!(c.measurement, d.mr_enclave);
}

#[test]
fn tdx_matches_readme_and_ignores_zero_padding() {
    let bytes = evidence(TDX);
    assert_eq!(bytes.len(), 5006);
    assert!(bytes[bytes.len() - 70..].iter().all(|b| *b == 0));
    let v = verify(TDX);
    let c = v.claims();
    assert_eq!(c.tee, TeeType::Tdx);
    assert_eq!(c.tcb_status.as_deref(), Some("UpToDate"));
    assert!(c.advisory_ids.is_empty());
    assert!(!c.debug);
    let TeeDetail::Tdx(d) = &c.detail else {
        panic!("tdx detail")
    };
    assert_eq!(
        d.mr_td.to_hex(),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(
        d.rtmr0.to_hex(),
        "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0"
    );
    assert_eq!(
        d.rtmr1.to_hex(),
        "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d54e579e9378"
    );
    assert_eq!(
        d.rtmr2.to_hex(),
        "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132"
    );
    assert!(d.rtmr3.is_zero());
    assert_eq!(
        d.mr_seam.to_hex(),
        "5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c436489d6c8e4f92f160b7cad34207b00c1"
    );
    assert_eq!(d.td_attributes.to_hex(), "0000001000000000");
    assert_eq!(d.tee_tcb_svn.to_hex(), "06010300000000000000000000000000");
    assert_eq!(
        c.report_data.as_ref().unwrap().to_hex(),
        "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
    );
}

#[test]
fn embedded_roots_have_the_documented_fingerprints() {
    let store = cloister_attest::TrustStore::builtin().unwrap();
    let fps: Vec<(String, String)> = store
        .fingerprints()
        .into_iter()
        .map(|(_, n, f)| (n, f))
        .collect();
    let readme =
        std::fs::read_to_string(format!("{}/roots/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert_eq!(fps.len(), 10);
    for (name, fp) in fps {
        assert!(
            readme.contains(&fp),
            "{name} fingerprint {fp} not in roots/README.md"
        );
    }
}

#[test]
fn text_encodings_decode_to_the_same_bytes() {
    let bin = evidence(SNP_MILAN);
    let hex_text = hex::encode(&bin);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bin);
    assert_eq!(
        cloister_attest::decode_text_or_binary(hex_text.as_bytes()),
        bin
    );
    assert_eq!(
        cloister_attest::decode_text_or_binary(format!("{hex_text}\n").as_bytes()),
        bin
    );
    assert_eq!(cloister_attest::decode_text_or_binary(b64.as_bytes()), bin);
    assert_eq!(cloister_attest::decode_text_or_binary(&bin), bin);
}
