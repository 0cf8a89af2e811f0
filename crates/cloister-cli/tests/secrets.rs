//! Secrets end to end through `serve --dev`: the CLI seals to keyvault's attested key, the
//! gateway forwards ciphertext only, executors fetch over the attested channel, functions see
//! exactly their declared secrets, rotation is seen at once, values never reach the database or
//! the logs, and trust in the sim root is pinned.

mod common;

use cloister_types::wire::DeployRequest;
use common::{Platform, assert_api_error};
use hyper::Method;
use serde_json::{Value, json};

const SHOW_SECRETS: &str = r#"
function handler(params, secrets, context) {
  for (const k of Object.keys(secrets)) context.log("value of " + k + " is " + secrets[k]);
  return { keys: Object.keys(secrets).sort(), values: secrets, frozen: Object.isFrozen(secrets) };
}
"#;

async fn deploy(p: &Platform, name: &str, secrets: &[&str]) -> cloister_types::wire::FunctionInfo {
    let req = DeployRequest {
        required_secrets: secrets.iter().map(|s| s.to_string()).collect(),
        ..DeployRequest::javascript(name, SHOW_SECRETS)
    };
    p.admin().deploy(&req).await.unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "CLI failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn put(p: &Platform, function: &str, name: &str, value: &str) {
    let root = p.sim_root();
    ok(&p.cli_stdin(
        &[
            "secret",
            "put",
            name,
            "--function",
            function,
            "--from-stdin",
            "--sim-root",
            &root,
        ],
        value.as_bytes(),
    ));
}

async fn invoke(p: &Platform, name: &str) -> Value {
    let r = p.admin().invoke(name, "{}", None).await.unwrap();
    json!({"result": serde_json::from_str::<Value>(r.result.get()).unwrap(), "logs": r.logs})
}

#[tokio::test]
async fn functions_get_exactly_their_declared_secrets_and_see_rotations() {
    let p = Platform::start().await;
    deploy(&p, "alpha", &["TOKEN", "db/password"]).await;
    deploy(&p, "bravo", &["TOKEN"]).await;
    put(&p, "alpha", "TOKEN", "alpha-token-1");
    put(&p, "alpha", "db/password", "alpha-db-pw");
    put(&p, "alpha", "UNDECLARED", "never-released");
    put(&p, "bravo", "TOKEN", "bravo-token-1");

    let a = invoke(&p, "alpha").await;
    assert_eq!(a["result"]["keys"], json!(["TOKEN", "password"]));
    assert_eq!(a["result"]["values"]["TOKEN"], "alpha-token-1");
    assert_eq!(a["result"]["values"]["password"], "alpha-db-pw");
    assert_eq!(a["result"]["frozen"], true);
    let b = invoke(&p, "bravo").await;
    assert_eq!(b["result"]["values"], json!({"TOKEN": "bravo-token-1"}));

    // Secret values are redacted from captured logs.
    let logs = a["logs"].to_string();
    assert!(logs.contains("value of TOKEN is [REDACTED]"), "{logs}");
    assert!(!logs.contains("alpha-token-1"), "{logs}");

    // A new value is seen by the very next invocation (the executor's cache is invalidated).
    let root = p.sim_root();
    ok(&p.cli_stdin(
        &[
            "secret",
            "rotate",
            "TOKEN",
            "--function",
            "alpha",
            "--from-stdin",
            "--sim-root",
            &root,
        ],
        b"alpha-token-2\n",
    ));
    assert_eq!(
        invoke(&p, "alpha").await["result"]["values"]["TOKEN"],
        "alpha-token-2"
    );
    let versions: Value = serde_json::from_str(&ok(&p.cli(&[
        "--json",
        "secret",
        "versions",
        "TOKEN",
        "--function",
        "alpha",
    ])))
    .unwrap();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);

    // Key rotations keep every secret readable by its function.
    ok(&p.cli(&["secret", "rotate-dek", "--function", "alpha"]));
    ok(&p.cli(&["keyvault", "rotate-mek"]));
    let a = invoke(&p, "alpha").await;
    assert_eq!(a["result"]["values"]["TOKEN"], "alpha-token-2");
    assert_eq!(
        invoke(&p, "bravo").await["result"]["values"]["TOKEN"],
        "bravo-token-1"
    );

    let list: Value = serde_json::from_str(&ok(&p.cli(&[
        "--json",
        "secret",
        "list",
        "--function",
        "alpha",
    ])))
    .unwrap();
    assert_eq!(list["secrets"].as_array().unwrap().len(), 3, "{list}");

    // Deleting a declared secret makes invocations fail with secret_missing.
    ok(&p.cli(&["secret", "delete", "db/password", "--function", "alpha"]));
    let err = p.admin().invoke("alpha", "{}", None).await;
    let e = assert_api_error(err, "secret_missing", 422);
    assert!(e.message.contains("password"), "{}", e.message);
    assert!(
        e.message.contains("in environment `production`"),
        "{}",
        e.message
    );

    // The whole story is in the audit log, and it verifies.
    let out = ok(&p.cli(&["--json", "audit", "verify", "--sim-root", &root]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let audit = p
        .admin()
        .json(Method::GET, "/v1/audit?limit=1000", None)
        .await
        .unwrap();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "keyvault.init",
        "function.deploy",
        "secret.put",
        "secret.rotate",
        "secret.release",
        "attestation.success",
        "key.rotate_dek",
        "key.rotate_mek",
        "secret.delete",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(
        !audit.to_string().contains("alpha-token"),
        "no values in the audit log"
    );
}

#[tokio::test]
async fn undeclared_missing_and_plaintext_are_refused() {
    let p = Platform::start().await;
    let f = deploy(&p, "needs", &["MISSING"]).await;
    let e = assert_api_error(
        p.admin().invoke("needs", "{}", None).await,
        "secret_missing",
        422,
    );
    assert!(e.message.contains("MISSING"));

    let path = format!("function-{}/production/default/MISSING", f.function_id);
    let mut c = p.admin();
    let plain = c
        .json(
            Method::PUT,
            &format!("/v1/secrets/{path}"),
            Some(&json!({"value": "plaintext"})),
        )
        .await;
    let e = assert_api_error(plain, "invalid_request", 400);
    assert!(e.message.contains("plaintext"), "{}", e.message);
    let garbage = c
        .json(
            Method::PUT,
            &format!("/v1/secrets/{path}"),
            Some(&json!({"sealed": "AAAA"})),
        )
        .await;
    assert_api_error(garbage, "invalid_request", 400);
    let bad = c
        .json(
            Method::PUT,
            "/v1/secrets/function-x/production/../y",
            Some(&json!({"sealed": "AAAA"})),
        )
        .await;
    assert_api_error(bad, "invalid_secret_path", 400);

    // A value sealed for one path cannot be stored at another (the HPKE info binds the path).
    let bundle = c.attestation().await.unwrap();
    let m: Value = serde_json::from_str(&ok(
        &p.cli(&["--json", "attest", "measure", "--role", "keyvault"])
    ))
    .unwrap();
    let mut expected = [0u8; 48];
    hex::decode_to_slice(m["measurement"].as_str().unwrap(), &mut expected).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let kv =
        cloister_client::attestation::verify_bundle(&bundle, &p.sim_root(), &expected, 300, now)
            .unwrap();
    assert_eq!(kv.tee_label, "sim (no hardware protection)");
    let other = cloister_types::SecretPath::parse(&format!(
        "function-{}/production/default/OTHER",
        f.function_id
    ))
    .unwrap();
    let sealed = cloister_client::attestation::seal_secret(&kv, &other, b"v").unwrap();
    let target = cloister_types::SecretPath::parse(&path).unwrap();
    let moved = c.put_secret(&target, &sealed, false).await;
    assert_api_error(moved, "invalid_request", 400);
    // Rotating a secret that does not exist is secret_not_found.
    let sealed = cloister_client::attestation::seal_secret(&kv, &target, b"v").unwrap();
    assert_api_error(
        c.put_secret(&target, &sealed, true).await,
        "secret_not_found",
        404,
    );
    c.put_secret(&target, &sealed, false).await.unwrap();
    assert_eq!(
        invoke(&p, "needs").await["result"]["values"]["MISSING"],
        "v"
    );

    // The bundle is public and labelled.
    let anon = p
        .client(None)
        .json(Method::GET, "/v1/attestation", None)
        .await
        .unwrap();
    assert_eq!(anon["teeLabel"], "sim (no hardware protection)");
    assert_eq!(anon["simRootFingerprint"], p.sim_root());

    // keyvault's evidence also verifies with `attest verify --format sim`, only against the pin.
    use base64::Engine as _;
    let ev = base64::engine::general_purpose::STANDARD
        .decode(anon["keyvault"]["evidence"].as_str().unwrap())
        .unwrap();
    let file = p.dir.path().join("kv.evidence");
    std::fs::write(&file, ev).unwrap();
    let f = file.to_str().unwrap();
    let root = p.sim_root();
    let out = p.cli(&[
        "attest",
        "verify",
        f,
        "--format",
        "sim",
        "--sim-root",
        &root,
    ]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("sim (no hardware protection)"), "{text}");
    let out = p.cli(&[
        "attest",
        "verify",
        f,
        "--format",
        "sim",
        "--sim-root",
        &"ab".repeat(32),
    ]);
    assert_eq!(out.status.code(), Some(1));
    for args in [
        &["attest", "verify", f, "--format", "sim"][..],
        &["attest", "verify", f],
    ] {
        let out = p.cli(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "sim evidence needs a pinned root"
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("pass --sim-root FINGERPRINT"), "{text}");
    }
}

#[tokio::test]
async fn the_cli_pins_the_sim_root_on_first_use_and_refuses_another() {
    let p = Platform::start().await;
    deploy(&p, "pinned", &["K"]).await;
    let out = p.cli_stdin(
        &["secret", "put", "K", "--function", "pinned", "--from-stdin"],
        b"one",
    );
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FIRST USE") && stderr.contains(&p.sim_root()),
        "{stderr}"
    );
    // Second use: silent, same root.
    let out = p.cli_stdin(
        &["secret", "put", "K", "--function", "pinned", "--from-stdin"],
        b"two",
    );
    ok(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("FIRST USE"));
    // A tampered pin (as if the server's root changed) is refused.
    let cfg_path = p.dir.path().join("cli-config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, cfg.replace(&p.sim_root(), &"ab".repeat(32))).unwrap();
    let out = p.cli_stdin(
        &[
            "--json",
            "secret",
            "put",
            "K",
            "--function",
            "pinned",
            "--from-stdin",
        ],
        b"three",
    );
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "attestation_failed", "{err}");
    // An explicit wrong root or measurement is refused too.
    let (wrong_root, wrong_m) = ("cd".repeat(32), "ee".repeat(48));
    for extra in [
        ["--sim-root", wrong_root.as_str()],
        ["--keyvault-measurement", wrong_m.as_str()],
    ] {
        let mut args = vec![
            "--json",
            "secret",
            "put",
            "K",
            "--function",
            "pinned",
            "--from-stdin",
        ];
        args.extend(extra);
        let out = p.cli_stdin(&args, b"four");
        assert!(!out.status.success());
        let err: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(err["error"]["code"], "attestation_failed", "{err}");
    }
    assert_eq!(invoke(&p, "pinned").await["result"]["values"]["K"], "two");

    // `trust list` shows the pin; `trust forget` drops it, and the next use pins afresh.
    let out = ok(&p.cli(&["--json", "trust", "list"]));
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        list["servers"][&p.url]["simRoots"],
        json!("ab".repeat(32)),
        "{list}"
    );
    let out = ok(&p.cli(&["trust", "forget"]));
    assert!(out.contains("forgot") && out.contains("simRoots"), "{out}");
    let out = ok(&p.cli(&["--json", "trust", "list"]));
    let list: Value = serde_json::from_str(&out).unwrap();
    assert!(list["servers"].get(&p.url).is_none(), "{list}");
    let out = p.cli_stdin(
        &["secret", "put", "K", "--function", "pinned", "--from-stdin"],
        b"five",
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("FIRST USE"));
    assert_eq!(invoke(&p, "pinned").await["result"]["values"]["K"], "five");
}

#[tokio::test]
async fn secret_values_never_reach_the_database_or_the_logs() {
    let mut p = Platform::start().await;
    deploy(&p, "leaky", &["NEEDLE"]).await;
    let needle = format!(
        "needle-{}",
        hex::encode(cloister_crypto::random_bytes::<16>().unwrap())
    );
    put(&p, "leaky", "NEEDLE", &needle);
    let r = invoke(&p, "leaky").await;
    assert_eq!(r["result"]["values"]["NEEDLE"], needle.as_str());
    ok(&p.cli(&["secret", "rotate-dek", "--function", "leaky"]));
    p.stop();
    let mut haystacks = vec![("serve log", std::fs::read(&p.log).unwrap())];
    for entry in std::fs::read_dir(p.data()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            haystacks.push(("data file", std::fs::read(&path).unwrap()));
        }
    }
    assert!(
        haystacks.iter().any(|(_, h)| h.len() > 10_000),
        "the database was read"
    );
    for (what, hay) in &haystacks {
        assert!(
            !hay.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "the secret value appears in a {what}"
        );
    }
}

#[tokio::test]
async fn a_restarted_platform_unseals_and_a_killed_keyvault_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Platform::start_in(dir).await;
    deploy(&p, "durable", &["K"]).await;
    put(&p, "durable", "K", "kept-across-restarts");
    assert_eq!(
        invoke(&p, "durable").await["result"]["values"]["K"],
        "kept-across-restarts"
    );
    let root = p.sim_root();

    // SIGKILL keyvault: serve restarts it, it unseals, the executor reconnects and re-attests.
    let serve_pid = p.child.as_ref().unwrap().id();
    let kv = common::child_pid(serve_pid, "keyvault").expect("keyvault child");
    // SAFETY: signal to a process this test started (indirectly).
    unsafe { libc::kill(kv as i32, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = p.cli_stdin(
            &[
                "secret",
                "put",
                "K",
                "--function",
                "durable",
                "--from-stdin",
                "--sim-root",
                &root,
            ],
            b"after-keyvault-restart",
        );
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "keyvault did not come back: {}",
            p.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        invoke(&p, "durable").await["result"]["values"]["K"],
        "after-keyvault-restart"
    );
    assert!(p.log().contains("restarting it"), "{}", p.log());

    // A full restart on the same data directory unseals automatically with the same root.
    p.stop();
    let dir = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    let p2 = Platform::start_in(dir).await;
    assert_eq!(p2.sim_root(), root);
    assert!(
        !p2.log().contains("Recovery key"),
        "the recovery key is printed only once"
    );
    assert_eq!(
        invoke(&p2, "durable").await["result"]["values"]["K"],
        "after-keyvault-restart"
    );
}

#[tokio::test]
async fn a_database_put_back_from_a_backup_needs_an_admin_signed_restore() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Platform::start_in(dir).await;
    let data = p.data();
    let (db, backup) = (data.join("keyvault.db"), p.dir.path().join("backup.db"));
    deploy(&p, "durable", &["K"]).await;
    put(&p, "durable", "K", "before-backup");
    let root = p.sim_root();
    ok(&p.cli(&["audit", "verify", "--sim-root", &root]));
    // A backup while the platform runs.
    ok(&p.cli(&[
        "keyvault",
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        backup.to_str().unwrap(),
    ]));
    put(&p, "durable", "K", "after-backup");
    assert_eq!(
        invoke(&p, "durable").await["result"]["values"]["K"],
        "after-backup"
    );
    ok(&p.cli(&["audit", "verify", "--sim-root", &root]));
    p.stop();

    // Whoever holds the disk puts the old database back: keyvault refuses to start on it.
    let replace_db = |from: &std::path::Path| {
        for side in ["keyvault.db-wal", "keyvault.db-shm"] {
            let _ = std::fs::remove_file(data.join(side));
        }
        std::fs::copy(from, &db).unwrap();
    };
    replace_db(&backup);
    let log = p.dir.path().join("refused.log");
    let mut serve = common::spawn_serve(&data, common::free_port(), &log);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("refusing to start") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(text.contains("rollback detected"), "{text}");
    assert!(text.contains("cloister keyvault restore"), "{text}");

    // A developer identity cannot accept the old state; nothing is changed when it tries.
    let dev_file = p.dir.path().join("dev.identity");
    cloister_authority::Identity::generate("dev")
        .unwrap()
        .save(&dev_file)
        .unwrap();
    let restore = |identity: &std::path::Path| {
        p.cli(&[
            "--identity",
            identity.to_str().unwrap(),
            "keyvault",
            "restore",
            "--data-dir",
            data.to_str().unwrap(),
            "--from",
            backup.to_str().unwrap(),
        ])
    };
    let out = restore(&dev_file);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing was changed"), "{err}");
    // The admin signs the restore: a new epoch, and the platform starts on the old state.
    ok(&restore(&p.admin_identity_path()));
    let dir = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    let p2 = Platform::start_in(dir).await;
    assert_eq!(
        invoke(&p2, "durable").await["result"]["values"]["K"],
        "before-backup"
    );
    // Clients see why the chain is shorter than the checkpoint they pinned, and accept it.
    let out = p2.cli(&["--json", "audit", "verify", "--sim-root", &root]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert_eq!(report["epoch"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restored from a backup by an admin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = ok(&p2.cli(&["audit", "list"]));
    assert!(list.contains("keyvault.restore"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fn_delete_says_what_becomes_of_the_functions_secrets() {
    let p = Platform::start().await;
    let keeper = deploy(&p, "keeper", &["K", "L"]).await;
    let goner = deploy(&p, "goner", &["K"]).await;
    deploy(&p, "plain", &[]).await;
    put(&p, "keeper", "K", "k-value");
    put(&p, "keeper", "L", "l-value");
    put(&p, "goner", "K", "g-value");
    let listed = |id: String| {
        let mut c = p.admin();
        async move {
            c.list_secrets(&format!("function-{id}/"))
                .await
                .unwrap()
                .secrets
                .len()
        }
    };
    assert_eq!(listed(keeper.function_id.clone()).await, 2);

    // Without a choice: refused, naming the secrets and both flags; nothing deleted.
    let out = p.cli(&["fn", "delete", "keeper"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error[secrets_exist]")
            && err.contains("--delete-secrets")
            && err.contains("--keep-secrets")
            && err.contains("/K"),
        "{err}"
    );
    assert!(p.admin().show("keeper", None).await.is_ok());
    assert_eq!(listed(keeper.function_id.clone()).await, 2);
    // Both at once is a usage error.
    let out = p.cli(&[
        "fn",
        "delete",
        "keeper",
        "--keep-secrets",
        "--delete-secrets",
    ]);
    assert_eq!(out.status.code(), Some(2));

    // Keep: the function goes, its secrets stay (and the CLI says where).
    let out = ok(&p.cli(&["fn", "delete", "keeper", "--keep-secrets"]));
    assert!(out.contains("kept its 2 secret(s)"), "{out}");
    assert_api_error(
        p.admin().show("keeper", None).await,
        "function_not_found",
        404,
    );
    assert_eq!(listed(keeper.function_id.clone()).await, 2);

    // Delete: the secrets go first, then the function.
    let out = ok(&p.cli(&["--json", "fn", "delete", "goner", "--delete-secrets"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["secretsDeleted"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(listed(goner.function_id.clone()).await, 0);
    assert_api_error(
        p.admin().show("goner", None).await,
        "function_not_found",
        404,
    );

    // No secrets: no choice needed.
    ok(&p.cli(&["fn", "delete", "plain"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_put_without_a_source_asks_at_a_hidden_prompt_on_a_terminal() {
    let p = Platform::start().await;
    deploy(&p, "prompted", &["K"]).await;
    let root = p.sim_root();
    // Not a terminal, no source: a clear error, nothing stored.
    let out = p.cli(&[
        "secret",
        "put",
        "K",
        "--function",
        "prompted",
        "--sim-root",
        &root,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--value-file")
            && err.contains("--from-stdin")
            && err.contains("hidden prompt"),
        "{err}"
    );
    // On a terminal (util-linux `script` gives the CLI a pseudo-terminal): typed twice, not
    // echoed, stored.
    let cmd = format!(
        "{} secret put K --function prompted --sim-root {root}",
        p.bin.display()
    );
    let typed = |input: &'static [u8]| {
        use std::io::Write;
        let mut child = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("CLOISTER_URL", &p.url)
            .env("CLOISTER_TOKEN", &p.token)
            .env("CLOISTER_CONFIG", p.dir.path().join("cli-config.json"))
            .env("CLOISTER_IDENTITY", p.admin_identity_path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut b = [0u8; 256];
                while let Ok(n) = stdout.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&b[..n]);
                }
            })
        };
        // Each line only once its prompt is up (so echo is already off).
        for (line, prompt) in input
            .split_inclusive(|b| *b == b'\n')
            .zip(["(hidden): ", "confirm: "])
        {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !String::from_utf8_lossy(&seen.lock().unwrap()).contains(prompt) {
                assert!(std::time::Instant::now() < deadline, "no prompt {prompt:?}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            stdin.write_all(line).unwrap();
            stdin.flush().unwrap();
        }
        drop(stdin);
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        (status, text)
    };
    let (status, text) = typed(b"typed-secret-1\ntyped-secret-2\n");
    assert!(!status.success() && text.contains("differ"), "{text}");
    let (status, text) = typed(b"typed-secret-1\ntyped-secret-1\n");
    assert!(status.success(), "{text}");
    assert!(text.contains("Value for K (hidden)"), "{text}");
    assert!(
        !text.contains("typed-secret-1"),
        "the value is not echoed: {text}"
    );
    assert_eq!(
        invoke(&p, "prompted").await["result"]["values"]["K"],
        "typed-secret-1"
    );
}

/// `serve --dev --database-url postgres://…`: both roles keep their state in PostgreSQL (one
/// schema each, none in the data directory), secrets stay ciphertext there, the URL's
/// password is on no command line and in no log, and everything survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_platform_runs_on_postgresql() {
    let Some(db) = cloister_db::testing::TestSchema::new("serve") else {
        return;
    };
    // Trust authentication ignores the password; it is here to be looked for.
    const PASSWORD: &str = "pw-needle-7c1d";
    let url = db
        .url()
        .replacen("://postgres@", &format!("://postgres:{PASSWORD}@"), 1);
    let dir = tempfile::tempdir().unwrap();
    let mut p = Platform::start_in_with(dir, &["--database-url", &url]).await;
    deploy(&p, "on-pg", &["K"]).await;
    put(&p, "on-pg", "K", "stored-in-postgres-v1");
    assert_eq!(
        invoke(&p, "on-pg").await["result"]["values"]["K"],
        "stored-in-postgres-v1"
    );
    for f in ["gateway.db", "keyvault.db"] {
        assert!(!p.data().join(f).exists(), "{f} in the data directory");
    }
    // Each role's tables are in its own schema.
    let count = |table: &str| {
        let db = &db;
        let table = table.to_owned();
        async move { db.execute(&format!("SELECT 1 FROM {table}")).await.unwrap() }
    };
    assert_eq!(count(&format!("{}_gateway.functions", db.schema)).await, 1);
    assert!(count(&format!("{}_keyvault.kv_secrets", db.schema)).await >= 1);
    assert!(count(&format!("{}_keyvault.audit_log", db.schema)).await >= 3);
    let leaked = db
        .execute(&format!(
            "SELECT 1 FROM {}_keyvault.kv_secrets WHERE position('stored-in-postgres'::bytea in ciphertext) > 0",
            db.schema
        ))
        .await
        .unwrap();
    assert_eq!(leaked, 0, "a secret value in the database");
    // The password is on no role's command line (only on the launcher's, where this test
    // put it; CLOISTER_DATABASE_URL keeps it off that one too) and in no log.
    let launcher = p.child.as_ref().unwrap().id().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry.file_name().to_string_lossy() == launcher {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(PASSWORD),
            "the database password is on the command line of {:?}",
            entry.path()
        );
    }
    p.stop();
    assert!(
        !p.log().contains(PASSWORD),
        "the database password in the log"
    );
    // The same data directory (its sim platform unseals keyvault's root), the same database.
    let dir = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    let p = Platform::start_in_with(dir, &["--database-url", &url]).await;
    assert_eq!(
        invoke(&p, "on-pg").await["result"]["values"]["K"],
        "stored-in-postgres-v1",
        "the function and its secret survive a restart"
    );
    put(&p, "on-pg", "K", "stored-in-postgres-v2");
    assert_eq!(
        invoke(&p, "on-pg").await["result"]["values"]["K"],
        "stored-in-postgres-v2"
    );
    assert_eq!(
        p.cli(&["audit", "verify", "--sim-root", &p.sim_root(), "--json"])
            .status
            .code(),
        Some(0),
        "the audit chain in PostgreSQL verifies"
    );
}
