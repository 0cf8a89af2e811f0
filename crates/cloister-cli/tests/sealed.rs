//! Sealed invocations end to end (docs/SEALED.md), played against a hostile gateway: its
//! logs, database, metrics and responses never hold a sealed input or result, and every
//! attack on a sealed call is refused with its own code.

mod common;

use base64::Engine as _;
use cloister_client::ClientError;
use cloister_client::attestation::{TrustedFleetKey, TrustedKeyvault, verify_bundle};
use cloister_client::sealed::{SealedError, Target, pick_key, seal_call};
use cloister_types::wire::{DeployRequest, FunctionInfo};
use cloister_types::{ErrorCode, code_hash};
use common::Platform;

/// Echoes its input, logs it, and throws it when asked.
const ECHO: &str = "function handler(p, s, ctx) { ctx.log('saw ' + p.m); \
                    if (p.fail) { throw new Error('failing on ' + p.m); } return { echo: p.m }; }";

fn now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap()
}

async fn deploy(p: &Platform, name: &str, code: &str) -> FunctionInfo {
    let req = DeployRequest::javascript(name, code);
    p.admin().deploy(&req).await.unwrap()
}

fn target(f: &FunctionInfo) -> Target {
    Target {
        function_id: f.function_id.clone(),
        version: f.version,
        code_hash: f.code_hash.clone(),
        manifest_digest: f.manifest_digest.clone(),
    }
}

/// Every file under `dir` (databases, WAL, logs), read raw.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                hits.push(path);
            }
        }
    }
    hits
}

/// Invocations the gateway counted (every outcome).
async fn invocations(p: &Platform) -> u64 {
    let m = p.admin().metrics().await.unwrap();
    m.lines()
        .filter(|l| l.starts_with("cloister_invocations_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn api_code(e: &ClientError) -> Option<(ErrorCode, u16)> {
    match e {
        ClientError::Api { status, error } => Some((error.code, *status)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_input_and_result_appear_in_no_log_database_metric_or_response() {
    let p = Platform::start().await;
    let f = deploy(&p, "echo", ECHO).await;
    p.executor_holds_keys().await;
    let kv = p.trusted_keyvault().await;
    let key = pick_key(&kv.fleet_keys, now()).unwrap();
    let marker = format!("marker-{}", hex::encode(rand::random::<[u8; 12]>()));
    let mut c = p.admin();

    // It runs, and the caller reads the result and the logs.
    let call = seal_call(key, &target(&f), &format!(r#"{{"m":"{marker}"}}"#), now()).unwrap();
    let r = c.invoke_sealed("echo", &call).await.unwrap();
    assert_eq!(r.result.get(), format!(r#"{{"echo":"{marker}"}}"#));
    assert_eq!(r.logs, vec![format!("saw {marker}")]);
    assert_eq!(r.version, f.version);

    // A function returning null (the result is there, and it is null).
    let nothing = deploy(&p, "nothing", "function handler() { return null; }").await;
    let call = seal_call(key, &target(&nothing), "{}", now()).unwrap();
    let r = c.invoke_sealed("nothing", &call).await.unwrap();
    assert_eq!(r.result.get(), "null");

    // The function's own failure: 422 with the code visible, message, stack and logs sealed.
    let call = seal_call(
        key,
        &target(&f),
        &format!(r#"{{"m":"{marker}","fail":true}}"#),
        now(),
    )
    .unwrap();
    match c.invoke_sealed("echo", &call).await {
        Err(ClientError::FunctionFailed {
            code,
            message,
            logs,
            ..
        }) => {
            assert_eq!(code, ErrorCode::FunctionError);
            assert!(message.contains(&marker), "{message}");
            assert_eq!(logs, vec![format!("saw {marker}")]);
        }
        other => panic!("expected the sealed failure, got {other:?}"),
    }
    // What the gateway relays (the raw HTTP bodies) holds neither.
    let body = |call: &cloister_client::sealed::SealedCall| {
        serde_json::to_vec(&cloister_types::wire::InvokeRequest {
            params: None,
            version: None,
            sealed: Some(call.input.clone()),
            receipt_nonce: None,
            receipt_signer: None,
        })
        .unwrap()
    };
    for params in [
        format!(r#"{{"m":"{marker}"}}"#),
        format!(r#"{{"m":"{marker}","fail":true}}"#),
    ] {
        let call = seal_call(key, &target(&f), &params, now()).unwrap();
        let raw = c
            .raw(
                hyper::Method::POST,
                "/v1/functions/echo/invoke",
                Some(body(&call).into()),
            )
            .await
            .unwrap();
        assert!(raw.status == 200 || raw.status == 422, "{}", raw.status);
        let text = String::from_utf8_lossy(&raw.body);
        assert!(!text.contains(&marker), "{text}");
        assert!(!text.contains("saw "), "logs are sealed: {text}");
    }
    // Nothing outside the executor's memory holds it: logs of every role, every database
    // file (WAL included), the metrics.
    assert!(!p.log().contains(&marker), "{}", p.log());
    let hits = files_containing(p.dir.path(), marker.as_bytes());
    assert!(hits.is_empty(), "the marker is in {hits:?}");
    // The scanner finds a planted copy (it can see a leak).
    let planted = p.data().join("planted.bin");
    std::fs::write(&planted, format!("xx{marker}yy")).unwrap();
    assert_eq!(
        files_containing(p.dir.path(), marker.as_bytes()),
        vec![planted.clone()]
    );
    std::fs::remove_file(&planted).unwrap();
    let metrics = c.metrics().await.unwrap();
    assert!(!metrics.contains(&marker));

    // The same marker sent plain is visible to the gateway: the test can see a leak.
    let plain = c
        .invoke("echo", &format!(r#"{{"m":"{marker}"}}"#), None)
        .await
        .unwrap();
    assert!(plain.result.get().contains(&marker));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_on_a_sealed_call_is_refused_with_its_own_code() {
    let p = Platform::start().await;
    let f = deploy(&p, "echo", ECHO).await;
    let other = deploy(&p, "other", "function handler() { return 1; }").await;
    p.executor_holds_keys().await;
    let kv = p.trusted_keyvault().await;
    let key = pick_key(&kv.fleet_keys, now()).unwrap().clone();
    let mut c = p.admin();
    let params = r#"{"m":"x"}"#;

    // Another code hash than the loaded one (the gateway routes the deployed version).
    let mut t = target(&f);
    t.code_hash = code_hash("function handler() { return 'evil'; }");
    let call = seal_call(&key, &t, params, now()).unwrap();
    let e = c.invoke_sealed("echo", &call).await.unwrap_err();
    assert_eq!(
        api_code(&e),
        Some((ErrorCode::CodeHashMismatch, 409)),
        "{e}"
    );
    // Sealed for one function, routed (by a hostile gateway) to another.
    let call = seal_call(&key, &target(&f), params, now()).unwrap();
    let e = c.invoke_sealed("other", &call).await.unwrap_err();
    assert_eq!(
        api_code(&e),
        Some((ErrorCode::CodeHashMismatch, 409)),
        "{e}"
    );
    let _ = other;

    // Sealed for the right function, version and code but another manifest: keyvault's grant
    // for that version names another, so the executor refuses before running.
    let mut t = target(&f);
    t.manifest_digest = "00".repeat(32);
    let call = seal_call(&key, &t, params, now()).unwrap();
    let e = c.invoke_sealed("echo", &call).await.unwrap_err();
    assert_eq!(
        api_code(&e),
        Some((ErrorCode::CodeHashMismatch, 409)),
        "{e}"
    );
    // What the client seals for comes from the owner-signed manifest, checked against the
    // registry keyvault's evidence binds: a gateway answering "echo" with another function's
    // manifest, an altered one, or one signed by a stranger, is refused before sealing.
    let verified = c.verified_target(&kv, "echo", None).await.unwrap();
    assert_eq!(verified.target, target(&f));
    let view = c.registry().await.unwrap();
    let platform = kv.audit_key.to_string();
    let other_manifest = c.signed_manifest("other", None).await.unwrap();
    let relabelled = cloister_types::wire::SignedManifest {
        function_id: f.function_id.clone(),
        version: f.version,
        ..other_manifest.clone()
    };
    assert!(matches!(
        cloister_client::manifest::verify_manifest(&relabelled, &view, &platform, "echo"),
        Err(cloister_client::manifest::ManifestError::WrongFunction { .. })
    ));
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(&c.signed_manifest("echo", None).await.unwrap().manifest)
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let altered = cloister_types::wire::SignedManifest {
        manifest: base64::engine::general_purpose::STANDARD.encode(&bytes),
        ..other_manifest.clone()
    };
    assert!(matches!(
        cloister_client::manifest::verify_manifest(&altered, &view, &platform, "echo"),
        Err(cloister_client::manifest::ManifestError::Signature(_))
    ));
    let stranger = cloister_authority::Identity::generate("stranger").unwrap();
    let own = common::new_function_manifest(
        &stranger,
        "echo",
        &code_hash("function handler() { return 'evil'; }"),
        &platform,
    );
    let forged = cloister_types::wire::SignedManifest {
        manifest: base64::engine::general_purpose::STANDARD.encode(&own),
        ..other_manifest
    };
    assert!(matches!(
        cloister_client::manifest::verify_manifest(&forged, &view, &platform, "echo"),
        Err(cloister_client::manifest::ManifestError::UnknownSigner(_))
    ));

    // A replayed request id.
    let call = seal_call(&key, &target(&f), params, now()).unwrap();
    c.invoke_sealed("echo", &call).await.unwrap();
    let e = c.invoke_sealed("echo", &call).await.unwrap_err();
    assert_eq!(api_code(&e), Some((ErrorCode::ReplayedRequest, 409)), "{e}");
    // A request sealed too long ago.
    let call = seal_call(&key, &target(&f), params, now() - 600).unwrap();
    let e = c.invoke_sealed("echo", &call).await.unwrap_err();
    assert_eq!(api_code(&e), Some((ErrorCode::ReplayedRequest, 409)), "{e}");

    // Tampered ciphertext, and a visible field changed in transit.
    let mut call = seal_call(&key, &target(&f), params, now()).unwrap();
    let mut ct = base64::engine::general_purpose::STANDARD
        .decode(&call.input.ciphertext)
        .unwrap();
    ct[40] ^= 1;
    call.input.ciphertext = base64::engine::general_purpose::STANDARD.encode(&ct);
    let e = c.invoke_sealed("echo", &call).await.unwrap_err();
    assert_eq!(
        api_code(&e),
        Some((ErrorCode::SealedInputInvalid, 400)),
        "{e}"
    );
    let mut call = seal_call(&key, &target(&f), params, now()).unwrap();
    // (Later, not earlier: a time before the executor's start is refused as a possible
    // replay before the ciphertext is even opened.)
    call.input.timestamp += 1;
    let e = c.invoke_sealed("echo", &call).await.unwrap_err();
    assert_eq!(
        api_code(&e),
        Some((ErrorCode::SealedInputInvalid, 400)),
        "{e}"
    );

    // A key from another platform (or one keyvault no longer releases).
    let foreign = cloister_crypto::HpkeKeyPair::derive(&[9; 32]).unwrap();
    let foreign_key = TrustedFleetKey {
        key_id: [9; 8],
        public: foreign.public(),
        ..key.clone()
    };
    let call = seal_call(&foreign_key, &target(&f), params, now()).unwrap();
    let e = c.invoke_sealed("echo", &call).await.unwrap_err();
    assert_eq!(api_code(&e), Some((ErrorCode::FleetKeyUnknown, 409)), "{e}");
    // A bundle from another platform does not verify against this one's pinned root, and a
    // key past its validity is never offered.
    let bundle = p.admin().attestation().await.unwrap();
    let wrong_root = "ab".repeat(32);
    assert!(matches!(
        verify_bundle(
            &bundle,
            &wrong_root,
            &p.keyvault_measurement(),
            300,
            now() as i64
        ),
        Err(cloister_client::attestation::BundleError::Evidence(
            cloister_client::evidence::EvidenceError::RootNotTrusted { .. }
        ))
    ));
    // (An executor refuses a key past its validity with `fleet_key_expired`; the clock
    // cannot be moved here, so that is covered by cloister-executor's unit tests, and
    // clients never offer such a key: `sealed::tests::the_newest_key_valid_now_is_picked`.)

    // An answer swapped with another call's (or relabelled) does not open.
    let a = seal_call(&key, &target(&f), r#"{"m":"a"}"#, now()).unwrap();
    let b = seal_call(&key, &target(&f), r#"{"m":"b"}"#, now()).unwrap();
    let raw = |call: &cloister_client::sealed::SealedCall| {
        serde_json::to_vec(&cloister_types::wire::InvokeRequest {
            params: None,
            version: None,
            sealed: Some(call.input.clone()),
            receipt_nonce: None,
            receipt_signer: None,
        })
        .unwrap()
    };
    let rb = c
        .raw(
            hyper::Method::POST,
            "/v1/functions/echo/invoke",
            Some(raw(&b).into()),
        )
        .await
        .unwrap();
    let rb: cloister_types::sealed::SealedInvokeResponse =
        serde_json::from_slice(&rb.body).unwrap();
    assert!(matches!(
        a.open(&rb.execution_id, &rb.outcome, &rb.sealed),
        Err(SealedError::Tampered)
    ));
    assert!(matches!(
        b.open(&rb.execution_id, "function_error", &rb.sealed),
        Err(SealedError::Tampered)
    ));
    assert!(matches!(
        b.open("another-execution", &rb.outcome, &rb.sealed),
        Err(SealedError::Tampered)
    ));
    let opened = b.open(&rb.execution_id, &rb.outcome, &rb.sealed).unwrap();
    assert_eq!(opened.result.unwrap().get(), r#"{"echo":"b"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_replaces_every_fleet_key_and_the_executor_follows() {
    let p = Platform::start().await;
    let f = deploy(&p, "echo", ECHO).await;
    p.executor_holds_keys().await;
    let before = p.trusted_keyvault().await;
    let old = pick_key(&before.fleet_keys, now()).unwrap().clone();
    let mut c = p.admin();
    let call = seal_call(&old, &target(&f), r#"{"m":"1"}"#, now()).unwrap();
    c.invoke_sealed("echo", &call).await.unwrap();

    // The admin adds a build to the executor policy: a new generation of fleet keys.
    let root = p.sim_root();
    let show = p.cli(&["--json", "keyvault", "policy", "show", "--sim-root", &root]);
    let policy: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let this_build = policy["measurements"][0].as_str().unwrap().to_owned();
    let yaml = policy["policy"].as_str().unwrap().replace(
        &this_build,
        &format!("{this_build}\", \"{}", "cd".repeat(48)),
    );
    let file = p.dir.path().join("policy.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let set = p.cli(&[
        "keyvault",
        "policy",
        "set",
        file.to_str().unwrap(),
        "--sim-root",
        &root,
    ]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let after = p.trusted_keyvault().await;
    assert_eq!(after.executor_measurements.len(), 2, "{yaml}");
    let new = pick_key(&after.fleet_keys, now()).unwrap().clone();
    assert_ne!(new.key_id, old.key_id, "every fleet key is replaced");
    assert_eq!(new.epoch, old.epoch);

    // A call under the new key works at once: the executor fetches keyvault's current keys
    // when a request names one it does not hold. The old key then opens nothing.
    let call = seal_call(&new, &target(&f), r#"{"m":"2"}"#, now()).unwrap();
    let r = c.invoke_sealed("echo", &call).await.unwrap();
    assert_eq!(r.result.get(), r#"{"echo":"2"}"#);
    let call = seal_call(&old, &target(&f), r#"{"m":"3"}"#, now()).unwrap();
    let e = c.invoke_sealed("echo", &call).await.unwrap_err();
    assert_eq!(api_code(&e), Some((ErrorCode::FleetKeyUnknown, 409)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_seals_verifies_and_opens() {
    let p = Platform::start().await;
    deploy(&p, "echo", ECHO).await;
    p.executor_holds_keys().await;
    let root = p.sim_root();
    let out = p.cli(&[
        "--json",
        "fn",
        "invoke",
        "echo",
        "--sealed",
        "--params",
        r#"{"m":"cli"}"#,
        "--sim-root",
        &root,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The function and its manifest signer are named and pinned on first use.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pinned for"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"]["echo"], "cli");
    assert_eq!(v["sealed"], true);
    assert_eq!(v["logs"][0], "saw cli");
    // Pinned to other code: the executor refuses, and the CLI says so with the code.
    let out = p.cli(&[
        "fn",
        "invoke",
        "echo",
        "--sealed",
        "--params",
        "{}",
        "--expect-code-hash",
        &code_hash("other"),
        "--sim-root",
        &root,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("code_hash_mismatch"), "{err}");
    // The function behind the name, its signer and its latest version are pinned: a
    // different function id (as a gateway or database swapping the name would produce), or
    // an older latest version, is refused before anything is sent.
    let cfg_path = p.dir.path().join("cli-config.json");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let pinned = &cfg["sealedFunctions"][&p.url]["echo"];
    assert_eq!(pinned["version"], 1, "{cfg}");
    for (field, value) in [
        ("functionId", serde_json::json!("another-function")),
        ("version", serde_json::json!(7)),
    ] {
        let mut edited = cfg.clone();
        edited["sealedFunctions"][&p.url]["echo"][field] = value;
        std::fs::write(&cfg_path, serde_json::to_vec(&edited).unwrap()).unwrap();
        let before = invocations(&p).await;
        let out = p.cli(&[
            "fn",
            "invoke",
            "echo",
            "--sealed",
            "--params",
            "{}",
            "--sim-root",
            &root,
        ]);
        assert!(!out.status.success(), "{field}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("function_changed"), "{field}: {err}");
        assert_eq!(invocations(&p).await, before, "nothing sent");
        let out = p.cli(&[
            "fn",
            "invoke",
            "echo",
            "--sealed",
            "--params",
            "{}",
            "--sim-root",
            &root,
            "--accept-function-change",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A plain call says it is not sealed.
    let out = p.cli(&["fn", "invoke", "echo", "--params", r#"{"m":"p"}"#]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-sensitive"));
}

fn receipt_trust(kv: &TrustedKeyvault) -> cloister_client::receipt::ReceiptTrust {
    cloister_client::receipt::ReceiptTrust::new(
        kv.root_fingerprint.clone(),
        kv.executor_measurements.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_verify_and_any_flipped_byte_fails() {
    use cloister_client::receipt::{ReceiptError, verify_receipt};
    let p = Platform::start().await;
    let f = deploy(&p, "echo", ECHO).await;
    p.executor_holds_keys().await;
    let kv = p.trusted_keyvault().await;
    let trust = receipt_trust(&kv);
    let mut c = p.admin();

    // Plain: the receipt names this call's params text and result text.
    let (resp, v) = c
        .invoke_with_receipt("echo", r#"{"m":"plain"}"#, None, &trust)
        .await
        .unwrap();
    assert_eq!(v.body.function_id, f.function_id);
    assert_eq!(v.body.code_hash, f.code_hash);
    assert_eq!(v.body.manifest_digest, f.manifest_digest);
    assert!(v.body.fleet_key_id.is_empty());
    let plain = resp.receipt.unwrap();

    // Sealed: it names the ciphertext, the sealed answer, the key and the request.
    let key = pick_key(&kv.fleet_keys, now()).unwrap();
    let call = seal_call(key, &target(&f), r#"{"m":"sealed"}"#, now())
        .unwrap()
        .ask_receipt(trust.clone())
        .unwrap();
    let answer = c.invoke_sealed("echo", &call).await.unwrap();
    let (sealed, v) = answer.receipt.unwrap();
    assert_eq!(v.body.fleet_key_id, call.input.key_id);
    assert_eq!(v.body.request_id, call.input.request_id);
    // A failed sealed call has a receipt too (its outcome is the failure's code).
    let failing = seal_call(key, &target(&f), r#"{"m":"x","fail":true}"#, now())
        .unwrap()
        .ask_receipt(trust.clone())
        .unwrap();
    match c.invoke_sealed("echo", &failing).await {
        Err(ClientError::FunctionFailed {
            receipt: Some(r), ..
        }) => assert_eq!(r.1.body.outcome, "function_error"),
        other => panic!("expected a failure with a receipt, got {other:?}"),
    }

    // Any flipped byte anywhere in a receipt (body, signature, key, evidence) fails.
    for receipt in [&plain, &sealed] {
        assert!(verify_receipt(receipt, &trust).is_ok());
        let text = serde_json::to_vec(receipt).unwrap();
        for i in 0..text.len() {
            let mut t = text.clone();
            t[i] ^= 1;
            let Ok(altered) = serde_json::from_slice::<cloister_types::receipt::Receipt>(&t) else {
                continue;
            };
            assert!(
                verify_receipt(&altered, &trust).is_err(),
                "flipping byte {i} ({:?}) went unnoticed",
                text[i] as char
            );
        }
    }
    // Another root, or an executor build keyvault does not allow, fails too; a valid
    // receipt of another call is not this one's.
    let mut other_root = trust.clone();
    other_root.root_fingerprint = "ab".repeat(32);
    assert!(matches!(
        verify_receipt(&plain, &other_root),
        Err(ReceiptError::Evidence(
            cloister_client::evidence::EvidenceError::RootNotTrusted { .. }
        ))
    ));
    let mut no_build = trust.clone();
    no_build.executor_measurements = vec!["cd".repeat(48)];
    assert!(matches!(
        verify_receipt(&plain, &no_build),
        Err(ReceiptError::MeasurementNotAllowed(_))
    ));
    assert!(
        call.check_receipt(
            Some(&plain),
            &answer.execution_id,
            "ok",
            &base64::engine::general_purpose::STANDARD.encode(b"x")
        )
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_leaves_out_the_evidence_its_caller_already_verified() {
    use cloister_client::receipt::{ReceiptError, ReceiptTrust, verify_receipt};
    let p = Platform::start().await;
    deploy(&p, "echo", ECHO).await;
    p.executor_holds_keys().await;
    let kv = p.trusted_keyvault().await;
    let trust = receipt_trust(&kv);
    let mut c = p.admin();
    assert_eq!(trust.cache.known_signer(&kv.root_fingerprint), None);

    // The first receipt carries the evidence; the SDK then knows the signer.
    let (first, _) = c
        .invoke_with_receipt("echo", r#"{"m":1}"#, None, &trust)
        .await
        .unwrap();
    let first = first.receipt.unwrap();
    assert!(!first.signer.evidence.is_empty());
    let key = first.signer.public_key.clone();
    assert_eq!(
        trust.cache.known_signer(&kv.root_fingerprint).as_deref(),
        Some(key.as_str())
    );
    assert_eq!(trust.cache.known_signer(&"ab".repeat(32)), None);

    // Asked by its key, the executor leaves the evidence out of the wire...
    let raw = |signer: &str| {
        serde_json::to_vec(&cloister_types::wire::InvokeRequest {
            params: Some(serde_json::value::RawValue::from_string(r#"{"m":2}"#.into()).unwrap()),
            version: None,
            sealed: None,
            receipt_nonce: Some("aa".repeat(16)),
            receipt_signer: Some(signer.to_owned()),
        })
        .unwrap()
    };
    let post = |body: Vec<u8>| {
        let mut c = p.admin();
        async move {
            c.raw(
                hyper::Method::POST,
                "/v1/functions/echo/invoke",
                Some(body.into()),
            )
            .await
            .unwrap()
        }
    };
    let r = post(raw(&key)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        json["receipt"]["signer"].get("evidence").is_none(),
        "{json}"
    );
    assert!(r.body.len() < 2048, "{} bytes", r.body.len());
    let slim: cloister_types::receipt::Receipt =
        serde_json::from_value(json["receipt"].clone()).unwrap();
    // ...which verifies against the signer this client verified, and nowhere else.
    let v = verify_receipt(&slim, &trust).unwrap();
    assert_eq!(
        v.complete(slim.clone()).signer.evidence,
        first.signer.evidence
    );
    let stranger = ReceiptTrust::new(
        kv.root_fingerprint.clone(),
        kv.executor_measurements.clone(),
    );
    assert!(matches!(
        verify_receipt(&slim, &stranger),
        Err(ReceiptError::SignerUnknown)
    ));
    // Another key named: the evidence comes whole.
    let r = post(raw(&"07".repeat(32))).await;
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        json["receipt"]["signer"]["evidence"].as_str(),
        Some(first.signer.evidence.as_str())
    );
    // Not a key: refused at the door.
    let r = post(raw("zz")).await;
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("receiptSigner"));

    // The SDK sends the key it knows and hands back the receipt whole.
    let (again, _) = c
        .invoke_with_receipt("echo", r#"{"m":3}"#, None, &trust)
        .await
        .unwrap();
    let again = again.receipt.unwrap();
    assert_eq!(again.signer.evidence, first.signer.evidence);
    assert!(verify_receipt(&again, &stranger).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_saves_a_receipt_that_verifies_offline_and_a_tampered_one_does_not() {
    let p = Platform::start().await;
    deploy(&p, "echo", ECHO).await;
    p.executor_holds_keys().await;
    let root = p.sim_root();
    for sealed in [false, true] {
        let file = p.dir.path().join(format!("receipt-{sealed}.json"));
        let mut args = vec![
            "fn",
            "invoke",
            "echo",
            "--params",
            r#"{"m":"r"}"#,
            "--receipt",
            file.to_str().unwrap(),
        ];
        // The plain call pins the root on first use (and verify finds it pinned); the
        // sealed one names it.
        if sealed {
            args.extend(["--sealed", "--sim-root", &root]);
        }
        let out = p.cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut verify = vec!["--json", "receipt", "verify", file.to_str().unwrap()];
        if sealed {
            verify.extend(["--sim-root", &root]);
        }
        let ok = p.cli(&verify);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(
            v["body"]["fleetKeyId"].as_str().unwrap().is_empty(),
            !sealed
        );
        // One digit of the output digest changed: exit non-zero with the reason.
        let mut saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let digest = saved["receipt"]["body"]["outputSha256"]
            .as_str()
            .unwrap()
            .to_owned();
        let flipped = if digest.starts_with('0') { "1" } else { "0" };
        saved["receipt"]["body"]["outputSha256"] = format!("{flipped}{}", &digest[1..]).into();
        let bad = p.dir.path().join("tampered.json");
        std::fs::write(&bad, serde_json::to_vec(&saved).unwrap()).unwrap();
        let out = p.cli(&[
            "receipt",
            "verify",
            bad.to_str().unwrap(),
            "--sim-root",
            &root,
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("receipt_invalid") && err.contains("signature"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_a_bundle_outside_its_trust_settings_before_sealing() {
    let p = Platform::start().await;
    deploy(&p, "echo", ECHO).await;
    p.executor_holds_keys().await;
    let root = p.sim_root();
    let this_executor = p.trusted_keyvault().await.executor_measurements[0].clone();
    let invoke = || {
        p.cli(&[
            "fn",
            "invoke",
            "echo",
            "--sealed",
            "--params",
            r#"{"m":"t"}"#,
        ])
    };
    let ok = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    ok(&p.cli(&["trust", "add", "root", &root]));
    // Only another executor build accepted: keyvault's policy names this one, so the
    // bundle is refused and nothing is sent.
    ok(&p.cli(&["trust", "add", "executor", &"cd".repeat(48)]));
    let before = invocations(&p).await;
    let out = invoke();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("attestation_failed") && err.contains(&this_executor),
        "{err}"
    );
    assert_eq!(
        invocations(&p).await,
        before,
        "refused before anything was sent"
    );
    // Accepting this build too: the allowlist is within what the client accepts.
    ok(&p.cli(&["trust", "add", "executor", &this_executor]));
    ok(&invoke());
    assert_eq!(invocations(&p).await, before + 1);
    // A flag cannot widen the settings.
    let out = p.cli(&[
        "fn",
        "invoke",
        "echo",
        "--sealed",
        "--sim-root",
        &"ab".repeat(32),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not among the roots"));
    // A keyvault build other than the one running.
    ok(&p.cli(&["trust", "add", "keyvault", &"ef".repeat(48)]));
    let show: serde_json::Value =
        serde_json::from_slice(&p.cli(&["--json", "trust", "show"]).stdout).unwrap();
    assert_eq!(show["trust"]["keyvaultMeasurements"][0], "ef".repeat(48));
    assert_eq!(show["trust"]["roots"][0], root);
    let out = invoke();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("measurement"), "{err}");
    // Bad input is named.
    let out = p.cli(&["trust", "add", "keyvault", "xyz"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("96 hex digits"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sealed_benchmark_measures_both_variants() {
    let p = Platform::start().await;
    p.executor_holds_keys().await;
    let root = p.sim_root();
    let dir = common::workloads();
    let out = p.cli(&[
        "--json",
        "bench",
        "--sealed",
        "--workloads",
        dir.to_str().unwrap(),
        "--requests",
        "40",
        "--clients",
        "2",
        "--seconds",
        "0.5",
        "--sim-root",
        &root,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["cpuCalls"], 40);
    for k in [
        "clientSealUs",
        "clientOpenUs",
        "clientReceiptVerifyUs",
        "throughputRatio",
    ] {
        assert!(r[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {r}");
    }
    // Server CPU is read in nanoseconds (schedstat): every variant takes some.
    for k in [
        "serverCpuUsPlain",
        "serverCpuUsSealed",
        "serverCpuUsSealedReceipt",
        "serverCpuUsSealedFullReceipt",
    ] {
        assert!(r[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {r}");
    }
    assert!(r["serverProcesses"].as_u64().is_some_and(|n| n >= 3), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_code_is_stored_sealed_runs_in_the_executor_and_only_owners_redeploy_it() {
    let p = Platform::start().await;
    p.executor_holds_keys().await;
    let root = p.sim_root();
    let marker = format!("code-marker-{}", hex::encode(rand::random::<[u8; 12]>()));
    let code = format!(
        "// {marker}\nfunction handler(p) {{ return {{ doubled: p.n * 2, tag: '{marker}'.length }}; }}"
    );
    // The source lives outside the platform's directory (what is scanned below).
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("secretfn.js");
    std::fs::write(&src, &code).unwrap();
    let out = p.cli(&[
        "--json",
        "fn",
        "deploy",
        src.to_str().unwrap(),
        "--name",
        "secretfn",
        "--confidential",
        "--sim-root",
        &root,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: FunctionInfo = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        info.code_hash,
        code_hash(&code),
        "the manifest names the plaintext's hash"
    );

    // Invoked without --sealed: the manifest says confidential, so the call is sealed.
    let out = p.cli(&[
        "--json",
        "fn",
        "invoke",
        "secretfn",
        "--params",
        r#"{"n":21}"#,
        "--sim-root",
        &root,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"]["doubled"], 42);
    assert_eq!(v["sealed"], true);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.dir.path().join("cli-config.json")).unwrap())
            .unwrap();
    assert_eq!(
        cfg["sealedFunctions"][&p.url]["secretfn"]["confidential"], true,
        "pinned as confidential: later calls stay sealed even if the manifest is hidden"
    );

    // A plain call is refused by the executor: its errors, stack and logs would show the
    // gateway pieces of the code.
    let e = p
        .admin()
        .invoke("secretfn", r#"{"n":1}"#, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("confidential"), "{e}");
    // Its owner's plain redeploy is refused by keyvault: it would publish the next revision.
    let e = p
        .admin()
        .deploy(&DeployRequest::javascript(
            "secretfn",
            format!("function handler() {{ return '{marker}-v2'; }}"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidRequest), "{e}");
    assert!(e.to_string().contains("--confidential"), "{e}");
    // The code's text is in no file under the platform's directory (database, WAL, logs) and
    // in no log line: the gateway and the database held only ciphertext.
    let hits = files_containing(p.dir.path(), marker.as_bytes());
    assert!(hits.is_empty(), "the code is in {hits:?}");
    assert!(!p.log().contains(&marker));
    // What the database holds is the sealed form.
    let db_has_sealed = files_containing(
        p.dir.path(),
        cloister_types::sealed::STORED_CODE_PREFIX.as_bytes(),
    );
    assert!(
        !db_has_sealed.is_empty(),
        "the stored code is the sealed form"
    );

    // A developer who does not own it cannot deploy a new version (keyvault refuses).
    let kv = p.trusted_keyvault().await;
    let key = pick_key(&kv.fleet_keys, now()).unwrap();
    let dev = p.developer_identity("mallory").await;
    let mut as_dev = p.client(Some(&p.token)).with_identity(dev, None);
    let evil = DeployRequest::javascript("secretfn", "function handler() { return 'evil'; }");
    let e = as_dev.deploy_confidential(&evil, key).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotOwner), "{e}");
    // Sealed code whose text is not the code the signed manifest names is refused, and
    // nothing is deployed.
    use base64::Engine as _;
    let named = "function handler() { return 1; }";
    let sealed_text = "function handler() { return 2; }";
    let key_id = hex::encode(key.key_id);
    let mut req = DeployRequest {
        name: "liar".into(),
        code: named.into(),
        sealed_code: Some(cloister_types::sealed::SealedCode {
            suite: cloister_types::sealed::SUITE_ID.into(),
            key_id: key_id.clone(),
            ciphertext: String::new(),
        }),
        ..evil
    };
    let manifest = cloister_client::signing::sign_deploy(
        &p.admin_identity(),
        &kv.audit_key.to_string(),
        &req,
        None,
    )
    .unwrap();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(
            base64::engine::general_purpose::STANDARD
                .decode(&manifest)
                .unwrap(),
        ))
    };
    let info =
        cloister_types::sealed::code_info(cloister_types::sealed::SUITE_ID, &key_id, &digest);
    let ct = key.public.seal(&info, b"", sealed_text.as_bytes()).unwrap();
    req.sealed_code = Some(cloister_types::sealed::SealedCode {
        suite: cloister_types::sealed::SUITE_ID.into(),
        key_id,
        ciphertext: base64::engine::general_purpose::STANDARD.encode(ct),
    });
    req.manifest = Some(manifest);
    req.code = String::new();
    let r = p
        .admin()
        .raw(
            hyper::Method::POST,
            "/v1/functions",
            Some(serde_json::to_vec(&req).unwrap().into()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        String::from_utf8_lossy(&r.body).contains("hash"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        p.admin().show("liar", None).await.is_err(),
        "nothing deployed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fn_history_and_logs_show_recent_invocations_and_nothing_of_sealed_ones() {
    let p = Platform::start().await;
    let f = deploy(&p, "echo", ECHO).await;
    p.executor_holds_keys().await;
    let kv = p.trusted_keyvault().await;
    let key = pick_key(&kv.fleet_keys, now()).unwrap();
    let mut c = p.admin();
    c.invoke("echo", r#"{"m":"first"}"#, None).await.unwrap();
    let failed = c
        .invoke("echo", r#"{"m":"second","fail":true}"#, None)
        .await;
    assert!(failed.is_err());
    let marker = format!("sealed-{}", hex::encode(rand::random::<[u8; 6]>()));
    let call = seal_call(key, &target(&f), &format!(r#"{{"m":"{marker}"}}"#), now()).unwrap();
    c.invoke_sealed("echo", &call).await.unwrap();

    let out = p.cli(&["--json", "fn", "history", "echo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h: cloister_types::wire::InvocationHistory = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes: Vec<(&str, bool)> = h
        .invocations
        .iter()
        .map(|r| (r.outcome.as_str(), r.sealed))
        .collect();
    assert_eq!(
        outcomes,
        vec![("ok", false), ("function_error", false), ("ok", true)]
    );
    assert!(h.invocations[2].logs.is_empty() && h.invocations[2].error.is_none());

    let out = p.cli(&["fn", "logs", "echo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("saw first") && text.contains("saw second"),
        "{text}"
    );
    assert!(
        text.contains("error[function_error]: Error: failing on second"),
        "{text}"
    );
    assert!(text.contains("[sealed: ok;"), "{text}");
    assert!(
        !text.contains(&marker),
        "a sealed call's logs never reach the gateway: {text}"
    );
    // A caller's control characters, logged by the function, reach the owner's terminal
    // escaped.
    c.invoke("echo", r#"{"m":"\u001b]52;c;ZXZpbA==\u0007 fake"}"#, None)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&p.cli(&["fn", "logs", "echo"]).stdout).into_owned();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("\\u{1b}]52;c;ZXZpbA==\\u{7} fake"), "{text}");
    let table = String::from_utf8_lossy(&p.cli(&["fn", "history", "echo"]).stdout).into_owned();
    assert!(
        table.starts_with("AT") && table.contains("function_error"),
        "{table}"
    );

    // --follow prints an invocation made after it started.
    let mut follow = std::process::Command::new(&p.bin)
        .args(["fn", "logs", "echo", "--follow", "--limit", "1"])
        .env("CLOISTER_URL", &p.url)
        .env("CLOISTER_TOKEN", &p.token)
        .env("CLOISTER_CONFIG", p.dir.path().join("cli-config.json"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    c.invoke("echo", r#"{"m":"later"}"#, None).await.unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut all = Vec::new();
        let mut b = [0u8; 512];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            let n = stdout.read(&mut b).unwrap_or(0);
            if n == 0 {
                break;
            }
            all.extend_from_slice(&b[..n]);
            if String::from_utf8_lossy(&all).contains("saw later") {
                break;
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let text = tokio::time::timeout(std::time::Duration::from_secs(30), seen)
        .await
        .unwrap()
        .unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(text.contains("saw later"), "{text}");

    // Only owners and admins read it; a deleted function's history goes with it.
    let dev_identity = p.developer_identity("stranger").await;
    let dev = p
        .token(
            cloister_types::Role::Developer,
            Some(dev_identity.id().to_string()),
        )
        .await;
    let e = p
        .client(Some(&dev.token))
        .invocations("echo", 0, 10)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e).map(|(_, s)| s), Some(403), "{e}");
    let invoker = p.token(cloister_types::Role::Invoker, None).await;
    let e = p
        .client(Some(&invoker.token))
        .invocations("echo", 0, 10)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e).map(|(_, s)| s), Some(403), "{e}");
    c.delete("echo").await.unwrap();
    let e = c.invocations("echo", 0, 10).await.unwrap_err();
    assert_eq!(
        api_code(&e),
        Some((ErrorCode::FunctionNotFound, 404)),
        "{e}"
    );
}
