//! `cloister attest`: the exact CLI shape scripts rely on, against the real evidence samples.

use std::path::PathBuf;
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../cloister-attest/testdata")
        .join(name)
}

fn cloister(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(args)
        .output()
        .expect("run cloister")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn p(name: &str) -> String {
    data(name).display().to_string()
}

#[test]
fn verify_json_reports_every_format_with_hex_measurements() {
    let nitro = cloister(&[
        "attest",
        "verify",
        &p("nitro/nitro_evervault_2022-10-13_prod.cbor"),
        "--at",
        "2022-10-13T09:00:00Z",
        "--json",
    ]);
    assert!(nitro.status.success());
    let v = json(&nitro);
    assert_eq!(v["verified"], true);
    assert_eq!(v["tee"], "nitro");
    assert_eq!(v["debug"], false);
    assert_eq!(
        v["pcrs"]["0"],
        "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b"
    );
    assert_eq!(
        v["pcrs"]["8"],
        "8790eb3cce6c83d07e84b126dc61ca923333d6f66615c4a79157de48c5ab2418bdc60746ea7b7afbff03a1c6210201cb"
    );
    assert_eq!(v["verdict"]["evaluated"], false);

    let snp = cloister(&[
        "attest",
        "verify",
        &p("sev-snp/snp_milan_virtee_report.bin"),
        "--format",
        "sev-snp",
        "--cert",
        &p("sev-snp/snp_milan_virtee_vcek.der"),
        "--cert",
        &p("sev-snp/snp_milan_virtee_ask_ark.pem"),
        "--at",
        "2024-01-01T00:00:00Z",
        "--json",
    ]);
    assert!(
        snp.status.success(),
        "{}",
        String::from_utf8_lossy(&snp.stderr)
    );
    let v = json(&snp);
    assert_eq!(
        v["measurement"],
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(v["policy"]["raw"], 0x30000);
    assert_eq!(v["policy"]["debug"], false);
    assert_eq!(v["reported_tcb"]["snp"], 8);
    assert_eq!(v["host_data"], "0".repeat(64));
    assert!(
        v["chip_id"]
            .as_str()
            .unwrap()
            .starts_with("d49554ec717f4e5b")
    );

    let sgx = cloister(&[
        "attest",
        "verify",
        &p("sgx-dcap/sgx_v3_quote.bin"),
        "--collateral",
        &p("sgx-dcap/sgx_v3_collateral.json"),
        "--at",
        "2025-07-19T10:01:17Z",
        "--json",
    ]);
    assert!(sgx.status.success());
    let v = json(&sgx);
    assert_eq!(v["tee"], "sgx");
    assert_eq!(
        v["mr_enclave"],
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        v["mr_signer"],
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!(v["isv_prod_id"], 0);
    assert_eq!(v["isv_svn"], 0);
    assert_eq!(v["tcb_status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(
        v["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );

    let tdx = cloister(&[
        "attest",
        "verify",
        &p("tdx-dcap/tdx_v4_quote.bin"),
        "--format",
        "tdx",
        "--collateral",
        &p("tdx-dcap/tdx_v4_collateral.json"),
        "--at",
        "2025-07-19T10:00:34Z",
        "--json",
    ]);
    assert!(tdx.status.success());
    let v = json(&tdx);
    assert_eq!(
        v["mr_td"],
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(
        v["rtmr2"],
        "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132"
    );
    assert_eq!(v["td_attributes"], "0000001000000000");
    assert_eq!(v["tcb_status"], "UpToDate");
}

#[test]
fn base64_and_hex_files_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let bin = std::fs::read(data("sev-snp/snp_genoa_azure_report.bin")).unwrap();
    let hex_path = dir.path().join("report.hex");
    std::fs::write(&hex_path, hex::encode(&bin)).unwrap();
    let out = cloister(&[
        "attest",
        "verify",
        hex_path.to_str().unwrap(),
        "--cert",
        &p("sev-snp/snp_genoa_azure_vcek.pem"),
        "--at",
        "2025-06-01T00:00:00Z",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["platform"], "Genoa (Genoa)");
    // The debug Nitro sample is stored as base64.
    let out = cloister(&[
        "attest",
        "verify",
        &p("nitro/nitro_evervault_2023-09-18_debug.cbor.b64"),
        "--at",
        "2023-09-18T15:05:00Z",
        "--json",
    ]);
    assert!(out.status.success());
    assert_eq!(json(&out)["debug"], true);
}

#[test]
fn a_policy_violation_exits_2_and_lists_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "allow_debug: false\nallowed_measurements:\n  sev-snp: [\"7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f\"]\n").unwrap();
    let out = cloister(&[
        "attest",
        "verify",
        &p("nitro/nitro_evervault_2023-09-18_debug.cbor.b64"),
        "--at",
        "2023-09-18T15:05:00Z",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("policy: REJECTED (2 violation(s))"),
        "{stdout}"
    );
    assert!(
        stdout.contains("allow_debug") && stdout.contains("allowed_measurements"),
        "{stdout}"
    );
    // The allowlisted SNP report passes the same policy.
    let out = cloister(&[
        "attest",
        "verify",
        &p("sev-snp/snp_milan_virtee_report.bin"),
        "--cert",
        &p("sev-snp/snp_milan_virtee_vcek.der"),
        "--at",
        "2024-01-01T00:00:00Z",
        "--policy",
        policy.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["verdict"]["accepted"], true);
}

#[test]
fn a_bad_policy_file_is_a_precise_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "allow_debug: false\nallowed_measurements:\n  tdx: [\"abcd\"]\n",
    )
    .unwrap();
    let out = cloister(&[
        "attest",
        "verify",
        &p("tdx-dcap/tdx_v4_quote.bin"),
        "--collateral",
        &p("tdx-dcap/tdx_v4_collateral.json"),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("allowed_measurements.tdx[0]") && stderr.contains("48 bytes"),
        "{stderr}"
    );
}

#[test]
fn tampered_expired_or_incomplete_evidence_exits_1_with_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(data("sev-snp/snp_milan_virtee_report.bin")).unwrap();
    bytes[0x90] ^= 1; // inside MEASUREMENT
    let tampered = dir.path().join("tampered.bin");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = cloister(&[
        "attest",
        "verify",
        tampered.to_str().unwrap(),
        "--cert",
        &p("sev-snp/snp_milan_virtee_vcek.der"),
        "--at",
        "2024-01-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["code"], "bad_signature");

    let out = cloister(&[
        "attest",
        "verify",
        &p("nitro/nitro_evervault_2022-10-13_prod.cbor"),
        "--at",
        "2022-10-13T12:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[untrusted_chain]"));

    let out = cloister(&[
        "attest",
        "verify",
        &p("sev-snp/snp_milan_virtee_report.bin"),
        "--at",
        "2024-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cert"));

    let truncated = dir.path().join("short.bin");
    std::fs::write(&truncated, &bytes[..100]).unwrap();
    let out = cloister(&[
        "attest",
        "verify",
        truncated.to_str().unwrap(),
        "--format",
        "sev-snp",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["code"], "malformed_evidence");
}

#[test]
fn inspect_decodes_without_verifying_and_says_so() {
    let out = cloister(&[
        "attest",
        "inspect",
        &p("tdx-dcap/tdx_v4_quote.bin"),
        "--format",
        "tdx",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("NOT VERIFIED"), "{stdout}");
    assert!(stdout.contains("91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"));
    let out = cloister(&[
        "attest",
        "inspect",
        &p("nitro/nitro_evervault_2022-10-13_prod.cbor"),
        "--json",
    ]);
    let v = json(&out);
    assert_eq!(v["verified"], false);
    assert_eq!(v["module_id"], "i-020b6af9246d90e92-enc0183d09086c24190");
}

#[test]
fn roots_lists_the_pinned_fingerprints() {
    let out = cloister(&["attest", "roots", "--json"]);
    let v = json(&out);
    let fps: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sha256"].as_str().unwrap())
        .collect();
    assert!(fps.contains(&"641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"));
    assert!(fps.contains(&"44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"));
    assert_eq!(fps.len(), 10);
}

#[test]
fn verify_online_fetches_the_vcek_then_reuses_the_disk_cache() {
    use cloister_attest::fetch::fake::{FakeServer, Route};
    let server = FakeServer::start().expect("fake KDS");
    let vcek_path = "/vcek/v1/Milan/d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115";
    let vcek = std::fs::read(data("sev-snp/snp_milan_virtee_vcek.der")).expect("vcek");
    server.route(vcek_path, Route::ok(vcek));
    let cache = tempfile::tempdir().expect("tmp");
    let kds = server.url();
    let cache_dir = cache.path().display().to_string();
    let report = p("sev-snp/snp_milan_virtee_report.bin");
    let args = [
        "attest",
        "verify",
        &report,
        "--at",
        "2024-01-01T00:00:00Z",
        "--online",
        "--kds-url",
        &kds,
        "--collateral-cache",
        &cache_dir,
        "--json",
    ];

    // Without --online there is no VCEK: a typed collateral error.
    let offline = cloister(&args[..5]);
    assert_eq!(offline.status.code(), Some(1));

    let first = cloister(&args);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let v = json(&first);
    assert_eq!(v["verified"], true);
    assert_eq!(v["collateral_sources"][0]["cached"], false);
    assert!(
        v["collateral_sources"][0]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with(vcek_path))
    );
    assert!(
        v["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("revocation not checked")),
        "{v}"
    );

    server.clear_routes();
    let second = cloister(&args);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(json(&second)["collateral_sources"][0]["cached"], true);

    // No cache and no service: exit 1 with a stable code.
    let mut no_cache = args.to_vec();
    no_cache.push("--no-cache");
    let failed = cloister(&no_cache);
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(json(&failed)["error"]["code"], "collateral_unavailable");
}
