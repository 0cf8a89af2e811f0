//! The `cloister` command-line client against a running platform: human and JSON output,
//! exit codes, and the server's error code in failures.

mod common;
#[path = "cli/crate_graph.rs"]
mod crate_graph;
#[path = "cli/egress.rs"]
mod egress;

use common::{Platform, workloads};
use serde_json::Value;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_list_show_invoke_delete() {
    let p = Platform::start().await;
    let add = workloads().join("add.js");
    let add = add.to_str().unwrap();

    let o = p.cli(&[
        "fn",
        "deploy",
        add,
        "--name",
        "adder",
        "--timeout-ms",
        "2000",
        "--memory-mb",
        "16",
        "--secret",
        "API_KEY",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("deployed adder v1 (sha256:"),
        "{}",
        stdout(&o)
    );

    let o = p.cli(&["--json", "fn", "deploy", add, "--name", "adder"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["version"].as_u64(), v["limits"]["timeoutMs"].as_u64()),
        (Some(2), Some(5000))
    );

    let o = p.cli(&["fn", "list"]);
    assert!(o.status.success());
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("adder") && l.contains(" 2 ")),
        "{}",
        stdout(&o)
    );

    let o = p.cli(&["--json", "fn", "show", "adder", "--version", "1"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["limits"]["memoryMb"], 16);
    assert_eq!(v["requiredSecrets"], serde_json::json!(["API_KEY"]));

    let o = p.cli(&["fn", "invoke", "adder", "--params", r#"{"a":20,"b":22}"#]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sum"], 42);
    // Without --params the handler gets `{}` (reading a field of it is no TypeError).
    let o = p.cli(&["fn", "invoke", "adder"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"sum": null}));

    let params = p.dir.path().join("params.json");
    std::fs::write(&params, r#"{"a":1,"b":2}"#).unwrap();
    // v1 declares API_KEY: it fails until the secret exists.
    let run_v1 = [
        "--json",
        "fn",
        "invoke",
        "adder",
        "--params-file",
        params.to_str().unwrap(),
        "--version",
        "1",
    ];
    let o = p.cli(&run_v1);
    assert!(!o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["code"], "secret_missing", "{v}");
    let root = p.sim_root();
    let o = p.cli_stdin(
        &[
            "secret",
            "put",
            "API_KEY",
            "--function",
            "adder",
            "--from-stdin",
            "--sim-root",
            &root,
        ],
        b"k",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = p.cli(&[
        "--json",
        "fn",
        "invoke",
        "adder",
        "--params-file",
        params.to_str().unwrap(),
        "--version",
        "1",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["result"]["sum"].as_u64(), v["version"].as_u64()),
        (Some(3), Some(1))
    );
    assert!(v["executionId"].is_string() && v["durationMs"].is_number());

    // It has a secret: deleting needs a word about it.
    let o = p.cli(&["fn", "delete", "adder"]);
    assert!(
        stderr(&o).contains("error[secrets_exist]"),
        "{}",
        stderr(&o)
    );
    let o = p.cli(&["--json", "fn", "show", "adder"]);
    let old_id = serde_json::from_slice::<Value>(&o.stdout).unwrap()["functionId"].clone();
    let o = p.cli(&["fn", "delete", "adder", "--delete-secrets"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = p.cli(&["fn", "invoke", "adder", "--params", "{}"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error[function_not_found]"),
        "{}",
        stderr(&o)
    );

    // keyvault keeps the name bound to its function: its owner deploys it again, as the same
    // function (a stranger cannot take the name). The same content as its latest version is
    // that version, back; other content is the next one.
    let o = p.cli(&["--json", "fn", "deploy", add, "--name", "adder"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["functionId"].clone(), v["version"].as_u64()),
        (old_id.clone(), Some(2))
    );
    let o = p.cli(&["--json", "fn", "delete", "adder"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = p.cli(&[
        "--json", "fn", "deploy", add, "--name", "adder", "--env", "A=1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["functionId"].clone(), v["version"].as_u64()),
        (old_id, Some(3))
    );
    let o = p.cli(&["fn", "invoke", "adder", "--params", r#"{"a":1,"b":1}"#]);
    assert!(stdout(&o).contains("\"sum\": 2"), "{}", stderr(&o));
    let o = p.cli(&["fn", "delete", "adder"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stranger = p.developer_identity("stranger").await;
    let token = p
        .token(
            cloister_types::Role::Developer,
            Some(stranger.id().to_string()),
        )
        .await;
    let e = p
        .client(Some(&token.token))
        .with_identity(stranger, None)
        .deploy(&cloister_types::wire::DeployRequest::javascript(
            "adder",
            "function handler() { return 'mine now'; }",
        ))
        .await;
    assert!(
        matches!(
            e,
            Err(cloister_client::ClientError::Api { status: 403, .. })
        ),
        "{e:?}"
    );
    // What keyvault keeps of a deleted function is read only by those who may deploy.
    let invoker = p.token(cloister_types::Role::Invoker, None).await;
    let e = p
        .client(Some(&invoker.token))
        .signed_manifest("adder", None)
        .await;
    assert!(
        matches!(
            e,
            Err(cloister_client::ClientError::Api { status: 404, .. })
        ),
        "{e:?}"
    );
    assert!(p.admin().signed_manifest("adder", None).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_non_zero_with_the_server_code() {
    let p = Platform::start().await;
    let bad = p.dir.path().join("bad.js");
    std::fs::write(&bad, "function handler() {\n  return (;\n}\n").unwrap();
    let o = p.cli(&["fn", "deploy", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error[invalid_code]") && stderr(&o).contains("line 2"),
        "{}",
        stderr(&o)
    );

    let o = p.cli(&["--json", "fn", "deploy", bad.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["code"], "invalid_code");

    let o = p.cli(&["fn", "invoke", "x", "--params", "{oops"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not valid JSON"), "{}", stderr(&o));

    let o = p.cli(&["--token", "clt_nope", "fn", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error[unauthorized]"), "{}", stderr(&o));

    let o = p.cli(&["--url", "http://127.0.0.1:1", "fn", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot reach"), "{}", stderr(&o));

    let o = p.cli(&["fn", "deploy", "/nonexistent/file.js"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_create_list_revoke_and_roles() {
    let p = Platform::start().await;
    // A developer token bound to an identity (the dev admin's id, from `identity show`).
    let who: Value =
        serde_json::from_slice(&p.cli(&["--json", "identity", "show"]).stdout).unwrap();
    let id = who["id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    let o = p.cli(&[
        "--json",
        "token",
        "create",
        "--role",
        "developer",
        "--for-identity",
        id,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dev: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(dev["identity"], id);
    let o = p.cli(&[
        "--json",
        "token",
        "create",
        "--role",
        "developer",
        "--for-identity",
        "not-an-id",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid_request"), "{}", stderr(&o));
    let o = p.cli(&[
        "--json", "token", "create", "--role", "invoker", "--label", "ci",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let created: Value = serde_json::from_slice(&o.stdout).unwrap();
    let (id, token) = (
        created["id"].as_str().unwrap(),
        created["token"].as_str().unwrap(),
    );
    assert_eq!(created["role"], "invoker");

    let o = p.cli(&["token", "list"]);
    assert!(
        stdout(&o).contains(id) && !stdout(&o).contains(token),
        "{}",
        stdout(&o)
    );

    // The invoker token cannot deploy.
    let add = workloads().join("add.js");
    let o = p.cli(&["--token", token, "fn", "deploy", add.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error[forbidden]"), "{}", stderr(&o));

    // Human output prints the bare token on stdout (for `$(...)`) and the id on stderr.
    let o = p.cli(&["token", "create", "--role", "developer"]);
    assert!(stdout(&o).trim().starts_with("clt_"));
    assert!(stderr(&o).contains("tok_"));

    let o = p.cli(&["token", "revoke", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = p.cli(&["--token", token, "fn", "list"]);
    assert!(stderr(&o).contains("error[unauthorized]"));

    let o = p.cli(&["token", "create", "--role", "root"]);
    assert_eq!(o.status.code(), Some(2), "clap rejects unknown roles");
}

/// Runs the CLI from `cwd` with only `config` (and `env`) set: no token, identity or URL
/// from the harness.
fn bare_cli(
    cwd: &std::path::Path,
    config: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(common::BIN)
        .args(args)
        .env_remove("CLOISTER_TOKEN")
        .env_remove("CLOISTER_URL")
        .env_remove("CLOISTER_IDENTITY")
        .env_remove("CLOISTER_PROFILE")
        .env("CLOISTER_CONFIG", config)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_dev_records_credentials_that_work_from_any_directory() {
    let p = Platform::start().await;
    // serve --dev recorded its token file and identity for its URL next to the CLI config.
    let config = p.dir.path().join("cli-config.json");
    let creds = p.dir.path().join("credentials.json");
    let text = std::fs::read_to_string(&creds).unwrap();
    assert!(text.contains(&p.url), "{text}");
    assert!(
        !text.contains(&p.token),
        "a token file is referenced, not copied: {text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(p.log().contains("credentials: recorded for"), "{}", p.log());

    // From an unrelated directory, with no token, identity or ./.cloister: a signed deploy.
    let elsewhere = tempfile::tempdir().unwrap();
    let add = workloads().join("add.js");
    let o = bare_cli(
        elsewhere.path(),
        &config,
        &["--url", &p.url, "fn", "deploy", add.to_str().unwrap()],
        &[],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bare_cli(
        elsewhere.path(),
        &config,
        &[
            "--url",
            &p.url,
            "fn",
            "invoke",
            "add",
            "--params",
            r#"{"a":1,"b":2}"#,
        ],
        &[],
        b"",
    );
    assert!(
        stdout(&o).contains("\"sum\": 3") || stdout(&o).contains("\"sum\":3"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // Another config (another user): nothing recorded, and the error says what was tried.
    let o = bare_cli(
        elsewhere.path(),
        &elsewhere.path().join("cfg.json"),
        &["--url", &p.url, "fn", "list"],
        &[],
        b"",
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("error[unauthorized]"), "{err}");
    assert!(
        err.contains("hint: no token for") && err.contains("cloister login"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_server_gets_its_own_credentials_and_profiles_name_them() {
    let a = Platform::start().await;
    let b = Platform::start().await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.json");
    let run = |args: &[&str], stdin: &[u8]| bare_cli(home.path(), &config, args, &[], stdin);

    // A wrong token is refused and nothing is recorded.
    let o = run(&["login", &a.url], b"not-a-token\n");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("refused this token"), "{}", stderr(&o));
    assert!(!home.path().join("credentials.json").exists());

    // Log in to A (token on stdin) and to B (flag) under a profile.
    let o = run(&["login", &a.url], format!("{}\n", a.token).as_bytes());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        &["--token", &b.token, "login", &b.url, "--profile", "bee"],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Deploy only on A; each URL lists with its own token.
    let add = workloads().join("add.js");
    let o = run(
        &[
            "--url",
            &a.url,
            "--identity",
            a.admin_identity_path().to_str().unwrap(),
            "fn",
            "deploy",
            add.to_str().unwrap(),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["--url", &a.url, "fn", "list"], b"");
    assert!(stdout(&o).contains("add"), "{}", stderr(&o));
    let o = run(&["--profile", "bee", "fn", "list"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("no functions deployed"),
        "{}",
        stdout(&o)
    );
    // A trailing slash or upper-case host is the same server.
    let shouty = format!("{}/", a.url.replace("http://", "HTTP://"));
    let o = run(&["--url", &shouty, "fn", "list"], b"");
    assert!(o.status.success(), "{}", stderr(&o));

    // The listing names servers and profiles, never a token.
    let o = run(&["servers"], b"");
    let text = stdout(&o);
    assert!(
        text.contains(&a.url) && text.contains(&b.url) && text.contains("bee"),
        "{text}"
    );
    assert!(
        !text.contains(&a.token) && !text.contains(&b.token),
        "{text}"
    );

    // An unknown profile names the known ones.
    let o = run(&["--profile", "nope", "fn", "list"], b"");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no profile `nope`") && stderr(&o).contains("bee"),
        "{}",
        stderr(&o)
    );

    // A server nothing is recorded for receives no Authorization header at all (a stub that
    // records what it is sent, and answers 401).
    let stub = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stub_url = format!("http://{}", stub.local_addr().unwrap());
    let recorder = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = stub.accept().unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut b).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
        }
        let body = r#"{"error":{"code":"unauthorized","message":"stub","details":{}}}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        String::from_utf8_lossy(&got).into_owned()
    });
    let o = run(&["--url", &stub_url, "fn", "list"], b"");
    assert!(stderr(&o).contains("error[unauthorized]"), "{}", stderr(&o));
    let request = recorder.join().unwrap();
    assert!(request.starts_with("GET /v1/functions"), "{request}");
    assert!(
        !request.to_ascii_lowercase().contains("authorization") && !request.contains(&a.token),
        "{request}"
    );
    // Both a URL and a profile is refused rather than guessed.
    let o = run(&["--url", &a.url, "--profile", "bee", "fn", "list"], b"");
    assert!(stderr(&o).contains("pass one"), "{}", stderr(&o));
    // A token exported for scripts is not taken as another server's by `login`.
    let o = bare_cli(
        home.path(),
        &config,
        &["login", &b.url],
        &[("CLOISTER_TOKEN", a.token.as_str())],
        b"",
    );
    assert!(
        !o.status.success() && stderr(&o).contains("no token given"),
        "{}",
        stderr(&o)
    );

    // Logging out of B forgets its token and profile; A's is never sent to B.
    let o = run(&["logout", &b.url], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["--url", &b.url, "fn", "list"], b"");
    assert!(stderr(&o).contains("error[unauthorized]"), "{}", stderr(&o));
    let o = run(&["--profile", "bee", "fn", "list"], b"");
    assert!(stderr(&o).contains("no profile `bee`"), "{}", stderr(&o));
    let text = std::fs::read_to_string(home.path().join("credentials.json")).unwrap();
    assert!(
        text.contains(&a.token) && !text.contains(&b.token),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_lifecycle_create_protect_grant_rotate_revoke() {
    let p = Platform::start().await;
    let dir = p.data();
    let dev_file = dir.join("dev.identity");
    let dev_path = dev_file.to_str().unwrap();
    let pass = [("CLOISTER_IDENTITY_PASSPHRASE", "correct horse")];

    // A passphrase-protected identity: its seed is not in the file.
    let o = p.cli_env(
        &[
            "--json",
            "identity",
            "create",
            "--file",
            dev_path,
            "--label",
            "dev",
            "--passphrase",
        ],
        b"",
        &pass,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let created: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(created["protected"], true);
    let (dev_id, dev_key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["publicKey"].as_str().unwrap().to_owned(),
    );
    // Without the passphrase (and no terminal) it cannot be used; a wrong one is named.
    let o = p.cli(&["--identity", dev_path, "identity", "show"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("CLOISTER_IDENTITY_PASSPHRASE"),
        "{}",
        stderr(&o)
    );
    let o = p.cli_env(
        &["--identity", dev_path, "identity", "show"],
        b"",
        &[("CLOISTER_IDENTITY_PASSPHRASE", "wrong")],
    );
    assert!(stderr(&o).contains("wrong passphrase"), "{}", stderr(&o));

    // The registry, checked against the bundle, has one admin: the CLI warns.
    let root = p.sim_root();
    let o = p.cli(&["identity", "list", "--sim-root", &root]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("is the only admin"), "{}", stderr(&o));

    // The admin grants the developer; a token acts for it.
    let o = p.cli(&[
        "identity",
        "grant",
        "--public-key",
        &dev_key,
        "--label",
        "dev",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = p.cli(&[
        "--json",
        "token",
        "create",
        "--role",
        "developer",
        "--for-identity",
        &dev_id,
    ]);
    let tok: Value = serde_json::from_slice(&o.stdout).unwrap();
    let token = tok["token"].as_str().unwrap().to_owned();
    let add = workloads().join("add.js");
    let add = add.to_str().unwrap();
    let as_dev = |args: &[&str]| {
        let mut full = vec!["--token", token.as_str(), "--identity", dev_path];
        full.extend_from_slice(args);
        p.cli_env(&full, b"", &pass)
    };
    let o = as_dev(&["--json", "fn", "deploy", add, "--name", "devfn"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Rotation: the new key takes over the file, the ownership and the token.
    let o = as_dev(&["--json", "identity", "rotate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rotated: Value = serde_json::from_slice(&o.stdout).unwrap();
    let new_id = rotated["rotatedTo"].as_str().unwrap().to_owned();
    assert_ne!(new_id, dev_id);
    assert_eq!(rotated["owners"][0]["owners"][0], new_id.as_str());
    assert!(
        dir.join("dev.retired").exists(),
        "the old key is kept aside"
    );
    let o = as_dev(&["--json", "identity", "show"]);
    let shown: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["id"], new_id.as_str());
    let o = as_dev(&["--json", "fn", "deploy", add, "--name", "devfn"]);
    assert!(
        o.status.success(),
        "the rotated identity redeploys: {}",
        stderr(&o)
    );
    let info: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["owners"][0], new_id.as_str());
    // The retired key is refused by keyvault, even for the code that already runs (keyvault,
    // not the gateway, decides that a deploy is `unchanged`, after checking its signer).
    let retired = dir.join("dev.retired");
    let o = p.cli_env(
        &[
            "--token",
            &token,
            "--identity",
            retired.to_str().unwrap(),
            "fn",
            "deploy",
            add,
            "--name",
            "devfn",
        ],
        b"",
        &pass,
    );
    assert!(stderr(&o).contains("identity_revoked"), "{}", stderr(&o));

    // The admin revokes it: its tokens stop working; what it deployed keeps running.
    let o = p.cli(&["identity", "revoke", &new_id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = as_dev(&["fn", "list"]);
    assert!(stderr(&o).contains("error[unauthorized]"), "{}", stderr(&o));
    let o = p.cli(&["fn", "invoke", "devfn", "--params", r#"{"a":2,"b":3}"#]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Those tokens' end is in the audit log, with why.
    let audit: Value = serde_json::from_slice(
        &p.cli(&["--json", "audit", "list", "--limit", "1000"])
            .stdout,
    )
    .unwrap();
    assert!(
        audit["entries"].as_array().unwrap().iter().any(|e| {
            let details: Value =
                serde_json::from_str(e["details"].as_str().unwrap_or("{}")).unwrap_or_default();
            e["action"] == "token.revoke"
                && e["subject"] == new_id.as_str()
                && details["reason"] == "identity revoked"
        }),
        "{audit}"
    );
    let o = p.cli(&["--json", "identity", "list", "--sim-root", &root]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let find = |id: &str| {
        list["identities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(find(&dev_id)["rotatedTo"], new_id.as_str());
    assert_eq!(find(&new_id)["revoked"], true);
    // The last admin cannot revoke itself.
    let who: Value =
        serde_json::from_slice(&p.cli(&["--json", "identity", "show"]).stdout).unwrap();
    let o = p.cli(&["identity", "revoke", who["id"].as_str().unwrap()]);
    assert!(stderr(&o).contains("error[conflict]"), "{}", stderr(&o));
}

#[test]
fn a_worker_uid_range_with_root_in_it_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    for (base, count) in [("0", "10"), ("4294967290", "100")] {
        let o = std::process::Command::new(common::BIN)
            .args(["serve", "--dev", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:1"])
            .args(["--worker-uid-base", base, "--worker-uid-count", count])
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("--worker-uid-base must be above 0"),
            "{}",
            stderr(&o)
        );
        assert!(!dir.path().join("data").exists(), "nothing was created");
    }
}

#[test]
fn help_names_environment_variables_without_a_blank_value_and_shows_the_params_default() {
    let o = std::process::Command::new(common::BIN)
        .args(["fn", "invoke", "--help"])
        .env_remove("CLOISTER_URL")
        .env_remove("CLOISTER_TOKEN")
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("[env: CLOISTER_URL]"), "{text}");
    assert!(
        !text.contains("=]"),
        "an unset variable shown as set to nothing: {text}"
    );
    assert!(text.contains("[default: {}]"), "{text}");
}

#[test]
fn a_file_name_that_is_no_function_name_suggests_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("My_Handler.js");
    std::fs::write(&file, "function handler() { return 1; }").unwrap();
    // Refused before any request is sent (no server listens on this URL).
    let o = std::process::Command::new(common::BIN)
        .args(["--url", "http://127.0.0.1:9", "fn", "deploy"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("\"My_Handler\"") && err.contains("pass --name NAME"),
        "{err}"
    );
}

#[test]
fn deploy_help_states_the_limits_ranges_and_defaults_the_server_applies() {
    use cloister_types::limits::{MIN_MEMORY_MB, MIN_TIMEOUT_MS, ServerLimits};
    let o = std::process::Command::new(common::BIN)
        .args(["fn", "deploy", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let d = ServerLimits::default();
    for expected in [
        format!(
            "{MIN_TIMEOUT_MS} up to the server's maximum ({} on a default server)",
            d.max_timeout_ms
        ),
        format!("[default: the server's, {}]", d.default_timeout_ms),
        format!(
            "{MIN_MEMORY_MB} up to the server's maximum ({} on a default server)",
            d.max_memory_mb
        ),
        format!("[default: the server's, {}]", d.default_memory_mb),
        "`limits.timeoutMs`".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in: {text}");
    }
}

#[test]
fn completions_are_generated_for_each_shell_and_name_the_commands() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef cloister"),
        ("fish", "complete -c cloister"),
    ] {
        let o = std::process::Command::new(common::BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(text.contains(marker), "{shell}: {text}");
        for sub in ["deploy", "invoke", "login", "secret"] {
            assert!(text.contains(sub), "{shell} lacks {sub}");
        }
    }
    let o = std::process::Command::new(common::BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn fn_new_writes_templates_that_fn_run_runs_locally_with_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(args)
            .current_dir(dir.path())
            .env_remove("CLOISTER_TOKEN")
            .env_remove("CLOISTER_URL")
            .env("CLOISTER_CONFIG", dir.path().join("cfg.json"))
            .output()
            .unwrap()
    };
    for t in ["js-basic", "js-secret", "js-async"] {
        let o = run(&["fn", "new", &format!("t-{t}"), "--template", t]);
        assert!(o.status.success(), "{t}: {}", stderr(&o));
    }
    // Existing files are not overwritten without --force; bad names are refused.
    assert!(!run(&["fn", "new", "t-js-basic"]).status.success());
    assert!(
        run(&["fn", "new", "t-js-basic", "--force"])
            .status
            .success()
    );
    assert!(!run(&["fn", "new", "Bad_Name"]).status.success());

    // Runs with no server at all, labelled local.
    let o = run(&[
        "fn",
        "run",
        "t-js-basic.js",
        "--params",
        r#"{"name":"Ada"}"#,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Hello, Ada!"), "{}", stdout(&o));
    assert!(stderr(&o).contains("LOCAL run") && stderr(&o).contains("log: greeting Ada"));
    let o = run(&[
        "--json",
        "fn",
        "run",
        "t-js-async.js",
        "--params",
        r#"{"items":[3,1,2]}"#,
    ]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["local"].clone(), v["result"]["sorted"].clone()),
        (Value::Bool(true), serde_json::json!([1, 2, 3]))
    );

    // Secrets from the command line or a .env file; without one the function fails and the
    // stack names the file.
    let o = run(&["fn", "run", "t-js-secret.js", "--secret", "API_KEY=abcd"]);
    assert!(
        stdout(&o).contains("\"keyLength\": 4"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    std::fs::write(dir.path().join(".env"), "# dev\nAPI_KEY=\"from file\"\n").unwrap();
    let o = run(&["fn", "run", "t-js-secret.js", "--secrets-file", ".env"]);
    assert!(
        stdout(&o).contains("\"keyLength\": 9"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = run(&["fn", "run", "t-js-secret.js"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("error[function_error]") && err.contains("t-js-secret.js:"),
        "{err}"
    );
    assert!(
        !run(&["fn", "run", "t-js-secret.js", "--secret", "NOEQUALS"])
            .status
            .success()
    );
    // The same limits as the executor: an endless loop meets its deadline.
    std::fs::write(
        dir.path().join("spin.js"),
        "function handler() { for (;;) {} }",
    )
    .unwrap();
    let o = run(&["fn", "run", "spin.js", "--timeout-ms", "300"]);
    assert!(
        stderr(&o).contains("error[function_timeout]"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_role_and_verifies_keyvault_here() {
    let p = Platform::start().await;
    let root = p.sim_root();
    let o = p.cli(&["--json", "status", "--sim-root", &root]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["gatewayHealthy"], true, "{v}");
    assert_eq!(v["platform"]["executor"]["reachable"], true, "{v}");
    assert_eq!(v["platform"]["gatewayVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["keyvault"]["verified"], true, "{v}");
    assert!(
        v["keyvault"]["tee"].as_str().unwrap().contains("sim"),
        "labelled: {v}"
    );
    assert_eq!(v["keyvault"]["measurement"].as_str().unwrap().len(), 96);
    let o = p.cli(&["status", "--sim-root", &root]);
    let text = stdout(&o);
    assert!(
        text.contains("keyvault") && text.contains("[verified here]"),
        "{text}"
    );
    // Another root: keyvault is not trusted, and the exit status says so.
    let o = p.cli(&["status", "--sim-root", &"ab".repeat(32)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("DOWN keyvault"), "{}", stdout(&o));
    // Nothing listening.
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let o = p.cli(&["--url", &dead, "status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("DOWN gateway"), "{}", stdout(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_is_owner_signed_and_holds_until_the_next_deploy() {
    let p = Platform::start().await;
    let root = p.sim_root();
    let deploy = |v: u32| {
        let c = p.admin();
        async move {
            let mut c = c;
            c.deploy(&cloister_types::wire::DeployRequest::javascript(
                "roll",
                format!("function handler() {{ return {{ v: {v} }}; }}"),
            ))
            .await
            .unwrap()
        }
    };
    for v in 1..=3 {
        deploy(v).await;
    }
    let versions = |p: &Platform| -> Value {
        serde_json::from_str(&stdout(&p.cli(&["--json", "fn", "versions", "roll"]))).unwrap()
    };
    let v = versions(&p);
    assert_eq!(
        (v["current"].clone(), v["pinned"].clone()),
        (3.into(), false.into())
    );
    assert_eq!(v["versions"].as_array().unwrap().len(), 3);
    let ran = |p: &Platform, extra: &[&str]| -> Option<u64> {
        let mut args = vec!["--json", "fn", "invoke", "roll"];
        args.extend(extra);
        let o = p.cli(&args);
        serde_json::from_str::<Value>(&stdout(&o)).ok()?["result"]["v"].as_u64()
    };
    assert_eq!(ran(&p, &[]), Some(3));

    // Back to v1: v2 and v3 deactivated by the owner's signature, v1 current.
    let o = p.cli(&[
        "--json",
        "fn",
        "rollback",
        "roll",
        "--to",
        "1",
        "--sim-root",
        &root,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["deactivated"], serde_json::json!([2, 3]), "{r}");
    assert_eq!(r["active"], serde_json::json!([1]), "{r}");
    assert_eq!(ran(&p, &[]), Some(1));
    let v = versions(&p);
    assert_eq!(
        (v["current"].clone(), v["pinned"].clone()),
        (1.into(), true.into())
    );
    // Keyvault refuses to let a deactivated version run, even when asked for by number.
    let o = p.cli(&["fn", "invoke", "roll", "--version", "3"]);
    assert!(stderr(&o).contains("is not active"), "{}", stderr(&o));
    let text = stdout(&p.cli(&["fn", "versions", "roll"]));
    assert!(
        text.lines().any(|l| l.starts_with('*') && l.contains("v1")),
        "{text}"
    );

    // Only an owner moves the current version.
    let stranger = p.developer_identity("stranger").await;
    let dev = p
        .token(
            cloister_types::Role::Developer,
            Some(stranger.id().to_string()),
        )
        .await;
    let e = p
        .client(Some(&dev.token))
        .set_current("roll", Some(3))
        .await;
    assert!(
        matches!(
            e,
            Err(cloister_client::ClientError::Api { status: 403, .. })
        ),
        "{e:?}"
    );
    // A version that does not exist is refused before anything is signed.
    let o = p.cli(&["fn", "rollback", "roll", "--to", "9", "--sim-root", &root]);
    assert!(stderr(&o).contains("no version 9"), "{}", stderr(&o));
    // The change is in the audit log.
    let audit = stdout(&p.cli(&["audit", "list"]));
    assert!(audit.contains("function.current"), "{audit}");

    // The next deploy is current (and active) again.
    deploy(4).await;
    assert_eq!(ran(&p, &[]), Some(4));
    assert_eq!(versions(&p)["pinned"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_binary_secrets_stack_file_names_and_unchanged_redeploys() {
    let p = Platform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cfg-fn.js");
    std::fs::write(
        &file,
        "function handler(params, secrets, context) {\n\
         \x20 if (params.fail) { throw new Error('boom'); }\n\
         \x20 const k = secrets.KEY;\n\
         \x20 return { env: context.env, frozen: Object.isFrozen(context.env),\n\
         \x20          binary: k instanceof Uint8Array, bytes: Array.from(k) };\n\
         }\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let deploy = |extra: &[&str]| {
        let mut args = vec!["--json", "fn", "deploy", f, "--secret", "KEY"];
        args.extend(extra);
        let o = p.cli(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()
    };
    // `__proto__` is a variable like any other (context.env has no prototype).
    let env = [
        "--env",
        "LOG_LEVEL=debug",
        "--env",
        "URL=https://x/?a=b",
        "--env",
        "__proto__=p",
    ];
    let v1 = deploy(&env);
    assert_eq!(v1["version"], 1);
    assert_eq!(
        v1["env"],
        serde_json::json!({"LOG_LEVEL": "debug", "URL": "https://x/?a=b", "__proto__": "p"})
    );
    assert_eq!(v1["sourceName"], "cfg-fn.js");
    assert!(v1.get("unchanged").is_none(), "{v1}");

    // Any bytes, exactly: a trailing newline byte of a binary value is kept.
    let bin = dir.path().join("key.bin");
    std::fs::write(&bin, [0xff, 0x00, 0x0a, 0x80, 0x0a]).unwrap();
    let o = p.cli(&[
        "secret",
        "put",
        "KEY",
        "--function",
        "cfg-fn",
        "--value-file",
        bin.to_str().unwrap(),
        "--sim-root",
        &p.sim_root(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = p.cli(&["--json", "fn", "invoke", "cfg-fn"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        r["result"],
        serde_json::json!({
            "env": {"LOG_LEVEL": "debug", "URL": "https://x/?a=b", "__proto__": "p"},
            "frozen": true, "binary": true, "bytes": [255, 0, 10, 128, 10],
        }),
        "{r}"
    );
    // The stack names the deployed file, not a placeholder.
    let o = p.cli(&["fn", "invoke", "cfg-fn", "--params", r#"{"fail":true}"#]);
    let err = stderr(&o);
    assert!(
        err.contains("cfg-fn.js:2") && !err.contains("function.js"),
        "{err}"
    );

    // The same code and configuration again: nothing registered, said so.
    let again = deploy(&env);
    assert_eq!(
        (again["version"].clone(), again["unchanged"].clone()),
        (1.into(), true.into())
    );
    let o = p.cli(&[
        "fn",
        "deploy",
        f,
        "--secret",
        "KEY",
        "--env",
        "LOG_LEVEL=debug",
        "--env",
        "URL=https://x/?a=b",
        "--env",
        "__proto__=p",
    ]);
    assert!(
        stdout(&o).starts_with("unchanged: cfg-fn v1"),
        "{}",
        stdout(&o)
    );
    let versions: Value =
        serde_json::from_str(&stdout(&p.cli(&["--json", "fn", "versions", "cfg-fn"]))).unwrap();
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );
    // Another value is a new version; `fn show` lists the configuration.
    let v2 = deploy(&["--env", "LOG_LEVEL=info"]);
    assert_eq!(v2["version"], 2);
    let shown = stdout(&p.cli(&["fn", "show", "cfg-fn"]));
    assert!(
        shown.contains("LOG_LEVEL=info") && shown.contains("cfg-fn.js"),
        "{shown}"
    );

    // Bad configuration and oversized values are refused with a clear message.
    let o = p.cli(&["fn", "deploy", f, "--env", "1BAD=x"]);
    assert!(
        !o.status.success() && stderr(&o).contains("invalid environment variable name"),
        "{}",
        stderr(&o)
    );
    let big = dir.path().join("big.bin");
    std::fs::write(
        &big,
        vec![0xffu8; cloister_types::limits::MAX_SECRET_VALUE_BYTES + 1],
    )
    .unwrap();
    let o = p.cli(&[
        "secret",
        "put",
        "KEY",
        "--function",
        "cfg-fn",
        "--value-file",
        big.to_str().unwrap(),
        "--sim-root",
        &p.sim_root(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("65536 bytes"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_sign_and_secret_seal_make_bodies_other_clients_send() {
    use bytes::Bytes;
    use hyper::Method;
    let p = Platform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signed-fn.js");
    std::fs::write(&file, "function handler(p, s) { return { key: s.KEY }; }").unwrap();
    let o = p.cli(&[
        "--json",
        "fn",
        "deploy",
        file.to_str().unwrap(),
        "--secret",
        "KEY",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let id = info["functionId"].as_str().unwrap();

    // A sealed, signed secret body, sent by another client: stored, and the function reads it.
    let o = p.cli_stdin(
        &[
            "secret",
            "seal",
            "KEY",
            "--function",
            "signed-fn",
            "--from-stdin",
            "--sim-root",
            &p.sim_root(),
        ],
        b"sealed-elsewhere",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let body: cloister_types::wire::SecretPutBody = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(!stdout(&o).contains("sealed-elsewhere"));
    let path = format!("function-{id}/production/default/KEY");
    let mut c = p.admin();
    let r = c
        .raw(
            Method::PUT,
            &format!("/v1/secrets/{path}"),
            Some(Bytes::from(serde_json::to_vec(&body).unwrap())),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let o = p.cli(&["--json", "fn", "invoke", "signed-fn"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["result"]["key"], "sealed-elsewhere", "{v}");
    // The body is bound to its path: under another one it is refused.
    let other = format!("function-{id}/production/default/OTHER");
    let r = c
        .raw(
            Method::PUT,
            &format!("/v1/secrets/{other}"),
            Some(Bytes::from(serde_json::to_vec(&body).unwrap())),
        )
        .await
        .unwrap();
    assert!(r.status >= 400, "a body sealed for KEY stored under OTHER");

    // An activation signed here and relayed by hand; a body of the wrong shape is refused
    // before anything is signed.
    let act =
        serde_json::json!({"function_id": id, "name": "signed-fn", "version": 1, "active": true});
    let o = p.cli_stdin(
        &[
            "identity",
            "sign",
            "cloister/activate/v1",
            "--sim-root",
            &p.sim_root(),
        ],
        act.to_string().as_bytes(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let signed = stdout(&o).trim().to_owned();
    let r = c
        .raw(
            Method::POST,
            "/v1/activations",
            Some(Bytes::from(
                serde_json::to_vec(&cloister_types::wire::SignedBody { signed }).unwrap(),
            )),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let o = p.cli_stdin(
        &["identity", "sign", "cloister/activate/v1"],
        b"{\"version\": 1}",
    );
    assert!(
        !o.status.success() && stderr(&o).contains("not a cloister/activate/v1 body"),
        "{}",
        stderr(&o)
    );
    let o = p.cli_stdin(&["identity", "sign", "cloister/nothing/v1"], b"{}");
    assert!(!o.status.success() && stderr(&o).contains("cannot sign for domain"));
}

/// Verifies `sig` over `msg` with `openssl pkeyutl` / `dgst` against the DER public key `spki`.
fn openssl_verifies(
    dir: &std::path::Path,
    spki: &[u8],
    msg: &[u8],
    sig: &[u8],
    ed25519: bool,
) -> bool {
    let (k, m, s) = (dir.join("pub.der"), dir.join("msg"), dir.join("sig"));
    std::fs::write(&k, spki).unwrap();
    std::fs::write(&m, msg).unwrap();
    std::fs::write(&s, sig).unwrap();
    let (k, m, s) = (
        k.to_str().unwrap(),
        m.to_str().unwrap(),
        s.to_str().unwrap(),
    );
    let args: Vec<&str> = if ed25519 {
        vec![
            "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", k, "-rawin", "-in", m,
            "-sigfile", s,
        ]
    } else {
        vec![
            "dgst",
            "-sha256",
            "-keyform",
            "DER",
            "-verify",
            k,
            "-signature",
            s,
            m,
        ]
    };
    let o = std::process::Command::new("openssl")
        .args(&args)
        .output()
        .expect("openssl (installed by .ci/run)");
    o.status.success()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_signs_with_the_keys_its_manifest_declares_and_independent_tools_verify() {
    let p = Platform::start().await;
    let root = p.sim_root();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signer.js");
    std::fs::write(
        &file,
        "async function handler(p, s, c) {
            const hex = (b) => Array.from(b).map((x) => x.toString(16).padStart(2, '0')).join('');
            try {
                if (p.public) return { pk: hex((await c.publicKey(p.key)).publicKey) };
                const r = await c.sign(p.key, p.msg, p.hash ? { hash: p.hash } : undefined);
                return { sig: hex(r.signature), alg: r.algorithm, v: r.keyVersion,
                         rid: r.recoveryId === undefined ? null : r.recoveryId };
            } catch (e) {
                if (p.catch) return { caught: e.code };
                throw e;
            }
        }",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let o = p.cli(&[
        "fn", "deploy", file, "--key", "ed", "--key", "p256", "--key", "k1", "--key", "mac",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut public = std::collections::HashMap::new();
    for (name, alg) in [
        ("ed", "ed25519"),
        ("p256", "ecdsa-p256"),
        ("k1", "ecdsa-secp256k1"),
        ("mac", "hmac-sha256"),
        ("other", "ed25519"),
    ] {
        let o = p.cli(&[
            "--json",
            "key",
            "create",
            name,
            "--function",
            "signer",
            "--algorithm",
            alg,
            "--sim-root",
            &root,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let k: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            (k["algorithm"].as_str(), k["version"].as_u64()),
            (Some(alg), Some(1))
        );
        public.insert(
            name,
            k["publicKey"].as_str().map(|h| hex::decode(h).unwrap()),
        );
    }
    // A taken name is refused.
    let o = p.cli(&[
        "--json",
        "key",
        "create",
        "ed",
        "--function",
        "signer",
        "--sim-root",
        &root,
    ]);
    assert!(!o.status.success());
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["error"]["code"],
        "conflict"
    );
    let sign = |key: &str, msg: &str, hash: Option<&str>| {
        let mut params = serde_json::json!({"key": key, "msg": msg});
        if let Some(h) = hash {
            params["hash"] = h.into();
        }
        p.cli(&[
            "--json",
            "fn",
            "invoke",
            "signer",
            "--params",
            &params.to_string(),
        ])
    };
    let signed = |key: &str, msg: &str, hash: Option<&str>| -> Value {
        let o = sign(key, msg, hash);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["result"].clone()
    };

    // Ed25519, checked by OpenSSL against the raw public key in an SPKI.
    let r = signed("ed", "pay 5", None);
    let sig = hex::decode(r["sig"].as_str().unwrap()).unwrap();
    let spki = |raw: &[u8]| {
        [
            hex::decode("302a300506032b6570032100").unwrap(),
            raw.to_vec(),
        ]
        .concat()
    };
    let ed = public["ed"].clone().unwrap();
    assert!(openssl_verifies(
        dir.path(),
        &spki(&ed),
        b"pay 5",
        &sig,
        true
    ));
    assert!(!openssl_verifies(
        dir.path(),
        &spki(&ed),
        b"pay 6",
        &sig,
        true
    ));

    // P-256 over SHA-256, checked by OpenSSL (the r||s signature in DER).
    let r = signed("p256", "pay 5", None);
    let rs = hex::decode(r["sig"].as_str().unwrap()).unwrap();
    let der = p256::ecdsa::Signature::from_slice(&rs).unwrap().to_der();
    let p256_spki = [
        hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap(),
        public["p256"].clone().unwrap(),
    ]
    .concat();
    assert!(openssl_verifies(
        dir.path(),
        &p256_spki,
        b"pay 5",
        der.as_bytes(),
        false
    ));

    // secp256k1 over Keccak-256 (Ethereum): low-S, and the recovery id gives back the key.
    let r = signed("k1", "tx", Some("keccak256"));
    let sig = k256::ecdsa::Signature::from_slice(&hex::decode(r["sig"].as_str().unwrap()).unwrap())
        .unwrap();
    assert!(sig.normalize_s() == sig, "low-S");
    use sha3::Digest as _;
    let digest = sha3::Keccak256::digest(b"tx");
    let rid = k256::ecdsa::RecoveryId::try_from(r["rid"].as_u64().unwrap() as u8).unwrap();
    let vk = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, rid).unwrap();
    assert_eq!(
        vk.to_sec1_point(false).as_bytes(),
        public["k1"].clone().unwrap().as_slice()
    );

    // HMAC: a 32-byte tag, the same for the same input, no public key.
    let a = signed("mac", "body", None);
    assert_eq!(a["sig"].as_str().unwrap().len(), 64);
    assert_eq!(a, signed("mac", "body", None));
    assert!(public["mac"].is_none());

    // A key the manifest does not declare: refused, with its code in details.code.
    let o = sign("other", "x", None);
    assert!(!o.status.success());
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["error"]["code"], "function_error", "{e}");
    assert_eq!(e["error"]["details"]["code"], "key_not_declared", "{e}");

    // Rotation: the newest version signs, under a new public key.
    let o = p.cli(&[
        "--json",
        "key",
        "rotate",
        "ed",
        "--function",
        "signer",
        "--sim-root",
        &root,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rotated: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rotated["version"], 2);
    let new_pk = hex::decode(rotated["publicKey"].as_str().unwrap()).unwrap();
    assert_ne!(Some(new_pk.clone()), public["ed"]);
    let r = signed("ed", "pay 5", None);
    assert_eq!(r["v"], 2);
    let sig = hex::decode(r["sig"].as_str().unwrap()).unwrap();
    assert!(openssl_verifies(
        dir.path(),
        &spki(&new_pk),
        b"pay 5",
        &sig,
        true
    ));

    // Older versions stay listed, each signed by keyvault: a signature made before the
    // rotation is checked against version 1's public key.
    let o = p.cli(&[
        "--json",
        "key",
        "versions",
        "ed",
        "--function",
        "signer",
        "--sim-root",
        &root,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let versions: Value = serde_json::from_slice(&o.stdout).unwrap();
    let listed: Vec<(u64, Vec<u8>)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                hex::decode(v["publicKey"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![(1, public["ed"].clone().unwrap()), (2, new_pk.clone())]
    );
    let o = p.cli(&[
        "key",
        "public",
        "ed",
        "--function",
        "signer",
        "--version",
        "1",
        "--sim-root",
        &root,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        hex::encode(public["ed"].clone().unwrap())
    );
    let o = p.cli(&[
        "key",
        "public",
        "ed",
        "--function",
        "signer",
        "--version",
        "3",
        "--sim-root",
        &root,
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no version 3"), "{}", stderr(&o));

    // The listing shows public halves only; keys are not secrets; each signature is audited.
    let o = p.cli(&["--json", "key", "list", "--function", "signer"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list["keys"].as_array().unwrap().len(), 5, "{list}");
    let o = p.cli(&["--json", "secret", "list", "--function", "signer"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("@keys"));
    let audit = p.cli(&["--json", "audit", "list", "--limit", "1000"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(text.matches("key.sign").count() >= 6, "{text}");

    // Limits in the manifest: keyvault refuses each violation with its own code, which the
    // function can catch.
    let o = p.cli(&[
        "fn",
        "deploy",
        file,
        "--key",
        "ed",
        "--key-limit",
        "p256:ops=sign",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--key p256"), "{}", stderr(&o));
    let o = p.cli(&[
        "fn",
        "deploy",
        file,
        "--key",
        "ed",
        "--key",
        "p256",
        "--key",
        "k1",
        "--key",
        "mac",
        "--key-limit",
        "ed:prefix=payments-v1-signed:",
        "--key-limit",
        "ed:rate=2/h",
        "--key-limit",
        "p256:ops=sign",
        "--key-limit",
        "k1:hashes=keccak256",
        "--key-limit",
        "mac:max-bytes=4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let caught = |params: Value| -> String {
        let mut params = params;
        params["catch"] = true.into();
        let o = p.cli(&[
            "--json",
            "fn",
            "invoke",
            "signer",
            "--params",
            &params.to_string(),
        ]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(o.status.success(), "{v}");
        v["result"]["caught"]
            .as_str()
            .unwrap_or("signed")
            .to_owned()
    };
    use serde_json::json;
    assert_eq!(
        caught(json!({"key": "ed", "msg": "5 to bob"})),
        "key_domain_tag_missing"
    );
    assert_eq!(
        caught(json!({"key": "mac", "msg": "12345"})),
        "key_message_too_large"
    );
    assert_eq!(caught(json!({"key": "mac", "msg": "1234"})), "signed");
    assert_eq!(
        caught(json!({"key": "k1", "msg": "tx", "hash": "sha256"})),
        "key_operation_not_allowed"
    );
    assert_eq!(
        caught(json!({"key": "k1", "msg": "tx", "hash": "keccak256"})),
        "signed"
    );
    assert_eq!(
        caught(json!({"key": "p256", "public": true})),
        "key_operation_not_allowed"
    );
    assert_eq!(caught(json!({"key": "ed", "public": true})), "signed");
    assert_eq!(
        caught(json!({"key": "ed", "msg": "payments-v1-signed:1"})),
        "signed"
    );
    assert_eq!(
        caught(json!({"key": "ed", "msg": "payments-v1-signed:2"})),
        "signed"
    );
    assert_eq!(
        caught(json!({"key": "ed", "msg": "payments-v1-signed:3"})),
        "key_rate_limited"
    );
    // Uncaught, the code is the invocation's details.code.
    let o = sign("ed", "payments-v1-signed:4", None);
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["error"]["details"]["code"], "key_rate_limited", "{e}");
    // A redeploy that names the keys without limits keeps the deployed ones (the newest
    // version's limits bind every version); `NAME:none` clears them on purpose.
    std::fs::write(
        file,
        format!("{}\n// v3", std::fs::read_to_string(file).unwrap()),
    )
    .unwrap();
    let all_keys = [
        "fn", "deploy", file, "--key", "ed", "--key", "p256", "--key", "k1", "--key", "mac",
    ];
    let o = p.cli(&all_keys);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("keeping the limits"), "{}", stderr(&o));
    assert_eq!(
        caught(json!({"key": "mac", "msg": "12345"})),
        "key_message_too_large"
    );
    std::fs::write(
        file,
        format!("{}\n// v4", std::fs::read_to_string(file).unwrap()),
    )
    .unwrap();
    let o = p.cli(&[&all_keys[..], &["--key-limit", "mac:none"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(caught(json!({"key": "mac", "msg": "12345"})), "signed");
    assert_eq!(
        caught(json!({"key": "ed", "msg": "5 to bob"})),
        "key_domain_tag_missing"
    );
}

/// secp256k1 checked by python-ecdsa (pure Python, independent of the `k256` crate keyvault
/// signs with): the signature verifies under `public` (uncompressed SEC1, hex) over SHA-256
/// of `msg`, and public-key recovery with `rid` gives back exactly `public`.
fn python_ecdsa_recovers(public: &str, msg: &[u8], sig: &str, rid: u64) -> bool {
    let python = common::python_tools().join("bin/python");
    let script = r#"
import hashlib, sys
from ecdsa import SECP256k1, VerifyingKey
from ecdsa.util import sigdecode_string
public, msg, sig, rid = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3]), int(sys.argv[4])
vk = VerifyingKey.from_string(public, curve=SECP256k1)
assert vk.verify(sig, msg, hashfunc=hashlib.sha256, sigdecode=sigdecode_string)
digest = hashlib.sha256(msg).digest()
found = VerifyingKey.from_public_key_recovery_with_digest(sig, digest, SECP256k1, hashfunc=hashlib.sha256, sigdecode=sigdecode_string)
# Recovery yields the candidates in recovery-id order; the reported id must pick ours.
assert found[rid].to_string("uncompressed") == public, "recovery id picks another key"
print("ok")
"#;
    let o = std::process::Command::new(python)
        .args([
            "-c",
            script,
            public,
            &hex::encode(msg),
            sig,
            &rid.to_string(),
        ])
        .output()
        .unwrap();
    o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok"
}

#[tokio::test]
async fn an_owner_signs_and_checks_through_keyvault_and_independent_tools_agree() {
    let p = Platform::start().await;
    let root = p.sim_root();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("owned.js");
    std::fs::write(&file, "function handler() { return 1; }").unwrap();
    let o = p.cli(&["fn", "deploy", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut public = std::collections::HashMap::new();
    for (name, alg) in [
        ("ed", "ed25519"),
        ("k1", "ecdsa-secp256k1"),
        ("mac", "hmac-sha256"),
    ] {
        let o = p.cli(&[
            "--json",
            "key",
            "create",
            name,
            "--function",
            "owned",
            "--algorithm",
            alg,
            "--sim-root",
            &root,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let k: Value = serde_json::from_slice(&o.stdout).unwrap();
        public.insert(name, k["publicKey"].as_str().unwrap_or_default().to_owned());
    }
    let key = |args: &[&str]| {
        let mut all = vec!["key"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--function", "owned", "--sim-root", &root]);
        p.cli(&all)
    };
    let signed = |args: &[&str]| -> Value {
        let mut all = vec!["--json", "key", "sign"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--function", "owned", "--sim-root", &root]);
        let o = p.cli(&all);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };

    // Ed25519: the text form prints the signature, which OpenSSL verifies.
    let o = key(&["sign", "ed", "--message", "pay 5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ed_sig = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    let spki = [
        hex::decode("302a300506032b6570032100").unwrap(),
        hex::decode(&public["ed"]).unwrap(),
    ]
    .concat();
    let sig = hex::decode(&ed_sig).unwrap();
    assert!(openssl_verifies(dir.path(), &spki, b"pay 5", &sig, true));
    assert!(!openssl_verifies(dir.path(), &spki, b"pay 6", &sig, true));

    // secp256k1: OpenSSL verifies, and python-ecdsa recovers the key from the recovery id.
    let msg = b"\x00\x01binary tx\xff";
    let r = signed(&["k1", "--message-hex", &hex::encode(msg)]);
    let k1_sig = r["signature"].as_str().unwrap();
    let rs = k256::ecdsa::Signature::from_slice(&hex::decode(k1_sig).unwrap()).unwrap();
    assert!(rs.normalize_s() == rs, "low-S");
    let k1_spki = [
        hex::decode("3056301006072a8648ce3d020106052b8104000a034200").unwrap(),
        hex::decode(&public["k1"]).unwrap(),
    ]
    .concat();
    assert!(openssl_verifies(
        dir.path(),
        &k1_spki,
        msg,
        rs.to_der().as_bytes(),
        false
    ));
    assert!(python_ecdsa_recovers(
        &public["k1"],
        msg,
        k1_sig,
        r["recoveryId"].as_u64().unwrap()
    ));
    assert!(!python_ecdsa_recovers(&public["k1"], b"other", k1_sig, 0));

    // Checks: a good signature is valid (exit 0), a wrong message is not (exit 1).
    let o = key(&["verify", "ed", "--message", "pay 5", "--signature", &ed_sig]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("valid: signed by ed version 1"));
    let o = key(&["verify", "ed", "--message", "pay 6", "--signature", &ed_sig]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("INVALID"));

    // HMAC has no public half: keyvault alone can check its tags, and does.
    let tag = signed(&["mac", "--message", "body"]);
    let tag = tag["signature"].as_str().unwrap().to_owned();
    assert_eq!(tag.len(), 64);
    assert!(
        key(&["verify", "mac", "--message", "body", "--signature", &tag])
            .status
            .success()
    );
    let mut flipped = hex::decode(&tag).unwrap();
    flipped[31] ^= 1;
    let o = key(&[
        "verify",
        "mac",
        "--message",
        "body",
        "--signature",
        &hex::encode(flipped),
    ]);
    assert_eq!(o.status.code(), Some(1));

    // After a rotation the newest version signs; the old signature still checks (version 1),
    // and version 1 signs again only when asked.
    assert!(key(&["rotate", "ed"]).status.success());
    let v2 = signed(&["ed", "--message", "pay 5"]);
    assert_eq!(v2["keyVersion"], 2);
    assert_ne!(v2["signature"].as_str().unwrap(), ed_sig);
    let o = key(&["verify", "ed", "--message", "pay 5", "--signature", &ed_sig]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("version 1"),
        "{}",
        stderr(&o)
    );
    let o = key(&[
        "verify",
        "ed",
        "--message",
        "pay 5",
        "--signature",
        &ed_sig,
        "--version",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v1 = signed(&["ed", "--message", "pay 5", "--version", "1"]);
    assert_eq!(
        (v1["keyVersion"].as_u64(), v1["signature"].as_str()),
        (Some(1), Some(ed_sig.as_str()))
    );
    let o = key(&["sign", "ed", "--message", "x", "--version", "7"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("key_not_found"), "{}", stderr(&o));

    // Grants: another function that declares `owned/ed` signs with it only while granted.
    let user = dir.path().join("user.js");
    std::fs::write(
        &user,
        "async function handler(p, s, c) {
            try { return { v: (await c.sign('owned/ed', 'from user')).keyVersion }; }
            catch (e) { return { code: e.code }; }
        }",
    )
    .unwrap();
    let o = p.cli(&["fn", "deploy", user.to_str().unwrap(), "--key", "owned/ed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run_user = || {
        let o = p.cli(&["--json", "fn", "invoke", "user"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["result"].clone()
    };
    assert_eq!(run_user()["code"], "key_not_granted");
    let o = key(&["grant", "ed", "--to", "user"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("owned/ed"));
    assert_eq!(run_user()["v"], 2);
    assert!(key(&["revoke", "ed", "--to", "user"]).status.success());
    assert_eq!(run_user()["code"], "key_not_granted");

    // Import: a key made elsewhere, sealed to the attested keyvault on its way in, signs as
    // itself; its secret is nowhere in the database.
    let seed: Vec<u8> = (1u8..=32).collect();
    let seed_file = dir.path().join("seed.hex");
    std::fs::write(&seed_file, hex::encode(&seed)).unwrap();
    let o = p.cli(&[
        "--json",
        "key",
        "import",
        "imp",
        "--function",
        "owned",
        "--algorithm",
        "ed25519",
        "--secret-file",
        seed_file.to_str().unwrap(),
        "--sim-root",
        &root,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let imported: Value = serde_json::from_slice(&o.stdout).unwrap();
    let expected = cloister_crypto::keys::KeyMaterial::from_secret(
        cloister_crypto::keys::KeyAlgorithm::Ed25519,
        &seed,
    )
    .unwrap()
    .public_key()
    .unwrap()
    .unwrap();
    assert_eq!(imported["publicKey"], hex::encode(&expected));
    assert_eq!(imported["exportable"], false);
    let s = signed(&["imp", "--message", "imported"]);
    let sig = hex::decode(s["signature"].as_str().unwrap()).unwrap();
    let spki = [hex::decode("302a300506032b6570032100").unwrap(), expected].concat();
    assert!(openssl_verifies(dir.path(), &spki, b"imported", &sig, true));
    for entry in std::fs::read_dir(p.data()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        assert!(!bytes.windows(32).any(|w| w == seed.as_slice()));
        assert!(!String::from_utf8_lossy(&bytes).contains(&hex::encode(&seed)));
    }
    // A wrong-sized secret is refused before anything is sent.
    std::fs::write(&seed_file, "00ff").unwrap();
    let o = key(&[
        "import",
        "imp2",
        "--algorithm",
        "ed25519",
        "--secret-file",
        seed_file.to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("32 bytes"), "{}", stderr(&o));

    // Bad input is explained before anything is sent.
    let o = key(&["sign", "ed"]);
    assert!(!o.status.success());
    let o = key(&["sign", "ed", "--message-hex", "zz"]);
    assert!(
        stderr(&o).contains("--message-hex must be hex"),
        "{}",
        stderr(&o)
    );
    let o = key(&["sign", "k1", "--message", "x", "--hash", "md5"]);
    assert!(stderr(&o).contains("unknown hash"), "{}", stderr(&o));
    // Every use is on the audit chain.
    let audit = p.cli(&["--json", "audit", "list", "--limit", "1000"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(text.matches("\"key.verify\"").count(), 6, "{text}");
}

#[tokio::test]
async fn the_signing_benchmark_measures_a_function_with_and_without_context_sign() {
    let p = Platform::start().await;
    let root = p.sim_root();
    let o = p.cli(&[
        "--json",
        "bench",
        "--signing",
        "--requests",
        "20",
        "--clients",
        "2",
        "--seconds",
        "0.5",
        "--sim-root",
        &root,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["warmSigning"]["samples"], 20, "{r}");
    assert_eq!(r["warmPlain"]["samples"], 20, "{r}");
    for k in ["throughputRatio", "inProcessSignP50Us"] {
        assert!(r[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {r}");
    }
    // Every measured call of the signing variant made one signature, each audited.
    let audit = p.cli(&["--json", "audit", "list", "--limit", "1000"]);
    let signs = String::from_utf8_lossy(&audit.stdout)
        .matches("\"key.sign\"")
        .count();
    assert!(signs >= 20 + 50, "{signs} key.sign entries");
}
