//! Trusted binaries across rebuilds: what a change to each executable does to the
//! measurements, to a development platform (carried over, loudly) and to a platform started
//! without the development launcher (a new executor waits for an admin).
//!
//! A "rebuild" of one executable is a copy of it with bytes appended: it still runs, and it
//! measures differently, as a real rebuild with a code change does. (`.ci/measurements`
//! checks with a real rebuild that editing the gateway leaves both measurements as they were.)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloister_types::wire::DeployRequest;
use common::Platform;
use serde_json::Value;

const SHOW: &str = r#"
function handler(params, secrets) {
  return { value: secrets.K };
}
"#;

const TRUSTED: [&str; 3] = [
    "cloister-keyvaultd",
    "cloister-executord",
    "cloister-worker",
];

/// A directory holding the built `cloister` and trusted executables (hard links, or
/// copies across file systems), as `cargo install` lays them out.
fn bin_dir(root: &Path) -> PathBuf {
    let built = Path::new(common::BIN).parent().unwrap();
    let dir = root.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    for name in TRUSTED.iter().chain(&["cloister"]) {
        if std::fs::hard_link(built.join(name), dir.join(name)).is_err() {
            std::fs::copy(built.join(name), dir.join(name)).unwrap();
        }
    }
    dir
}

/// Replaces `dir/name` with a different build of it (a copy with bytes appended).
fn rebuild(dir: &Path, name: &str) {
    let p = dir.join(name);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.extend_from_slice(format!("\0another build of {name}\0").as_bytes());
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `cloister --json attest measure` for the executables in `dir`.
fn measure(dir: &Path) -> Value {
    let out = Command::new(dir.join("cloister"))
        .args(["--json", "attest", "measure", "--trusted-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
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

/// Deploys `shows` (reads secret K) and stores `value` as K, trusting the keyvault in `bins`.
async fn deploy_and_put(p: &Platform, bins: &Path, value: &str) {
    let req = DeployRequest {
        required_secrets: vec!["K".into()],
        ..DeployRequest::javascript("shows", SHOW)
    };
    p.admin().deploy(&req).await.unwrap();
    put(p, bins, value);
}

fn put(p: &Platform, bins: &Path, value: &str) {
    let root = p.sim_root();
    ok(&p.cli_env(
        &[
            "secret",
            "put",
            "K",
            "--function",
            "shows",
            "--from-stdin",
            "--sim-root",
            &root,
        ],
        value.as_bytes(),
        &[("CLOISTER_TRUSTED_DIR", bins.to_str().unwrap())],
    ));
}

async fn secret_read(url: &str, token: &str) -> Result<String, String> {
    let mut c = cloister_client::Client::new(url, Some(token.to_owned())).unwrap();
    match c.invoke("shows", "{}", None).await {
        Ok(r) => {
            let v: Value = serde_json::from_str(r.result.get()).unwrap();
            Ok(v["value"].as_str().unwrap_or_default().to_owned())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn a_gateway_only_rebuild_keeps_the_trusted_measurements_and_the_secrets() {
    let root = tempfile::tempdir().unwrap();
    let bins = bin_dir(root.path());
    let before = measure(&bins);
    let mut p =
        Platform::start_from(tempfile::tempdir().unwrap(), &bins.join("cloister"), &[]).await;
    deploy_and_put(&p, &bins, "kept").await;
    assert_eq!(secret_read(&p.url, &p.token).await.unwrap(), "kept");
    p.stop();

    // A new CLI + gateway build (that it leaves the trusted executables' bytes alone is what
    // `.ci/measurements` checks with a real rebuild). The new CLI measures them as before.
    rebuild(&bins, "cloister");
    assert_eq!(measure(&bins), before);

    // The platform restarts on its own, nothing to migrate, and secrets still read.
    let dir = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    let p = Platform::start_from(dir, &bins.join("cloister"), &[]).await;
    assert!(!p.log().contains("DEVELOPMENT ONLY"), "{}", p.log());
    assert_eq!(secret_read(&p.url, &p.token).await.unwrap(), "kept");
}

#[tokio::test]
async fn trusted_rebuilds_are_carried_over_in_development_and_said_so() {
    let root = tempfile::tempdir().unwrap();
    let bins = bin_dir(root.path());
    let m0 = measure(&bins);
    let mut p =
        Platform::start_from(tempfile::tempdir().unwrap(), &bins.join("cloister"), &[]).await;
    deploy_and_put(&p, &bins, "v1").await;
    p.stop();

    // A new executor build: only the executor's measurement moves; the dev admin approves
    // it, visibly, and the function still gets its secret.
    rebuild(&bins, "cloister-executord");
    let m1 = measure(&bins);
    assert_eq!(m0["keyvault"], m1["keyvault"]);
    assert_ne!(m0["executor"], m1["executor"]);
    let dir = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    let mut p = Platform::start_from(dir, &bins.join("cloister"), &[]).await;
    let log = p.log();
    assert!(
        log.contains("DEVELOPMENT ONLY") && log.contains("the executor was rebuilt"),
        "{log}"
    );
    assert!(!log.contains("keyvault was rebuilt"), "{log}");
    assert_eq!(secret_read(&p.url, &p.token).await.unwrap(), "v1");
    let policy = ok(&p.cli_env(
        &[
            "--json",
            "keyvault",
            "policy",
            "show",
            "--sim-root",
            &p.sim_root(),
        ],
        b"",
        &[("CLOISTER_TRUSTED_DIR", bins.to_str().unwrap())],
    ));
    let m1_exec = m1["executor"]["measurement"].as_str().unwrap();
    assert!(policy.contains(m1_exec), "{policy}");
    p.stop();

    // A new keyvault build: its root is re-sealed to it with the dev admin's approval and
    // the recovery key; the executor (which names the keyvault it trusts) moves too.
    rebuild(&bins, "cloister-keyvaultd");
    let m2 = measure(&bins);
    assert_ne!(m1["keyvault"], m2["keyvault"]);
    assert_ne!(m1["executor"], m2["executor"]);
    let dir = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    let p = Platform::start_from(dir, &bins.join("cloister"), &[]).await;
    let log = p.log();
    assert!(
        log.contains("keyvault was rebuilt") && log.contains("the executor was rebuilt"),
        "{log}"
    );
    assert_eq!(secret_read(&p.url, &p.token).await.unwrap(), "v1");
    // Writes work against the new keyvault (the CLI checks its new measurement).
    put(&p, &bins, "v2");
    assert_eq!(secret_read(&p.url, &p.token).await.unwrap(), "v2");
    // The re-seal is in the audit log, as the dev admin's act.
    let audit: Value = serde_json::from_str(&ok(&p.cli(&["--json", "audit", "list"]))).unwrap();
    let admin_id = p.admin_identity().id().to_string();
    let reseal = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "key.migrate_root")
        .unwrap_or_else(|| panic!("no re-seal in the audit log: {audit}"));
    assert_eq!(reseal["actor"], admin_id.as_str(), "{reseal}");
    // The approval file is gone once used.
    assert!(!p.data().join("keyvault-reseal.approval").exists());
}

/// The three roles started by hand (no development launcher), killed on drop.
struct Roles(Vec<Child>);

impl Drop for Roles {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn creds_file(path: &Path, lines: &[(&str, &str)]) {
    use std::os::unix::fs::OpenOptionsExt;
    let text: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .unwrap();
}

#[tokio::test]
async fn without_the_development_launcher_a_rebuilt_executor_waits_for_an_admin() {
    let root = tempfile::tempdir().unwrap();
    let bins = bin_dir(root.path());
    let mut p =
        Platform::start_from(tempfile::tempdir().unwrap(), &bins.join("cloister"), &[]).await;
    deploy_and_put(&p, &bins, "guarded").await;
    let sim_root = p.sim_root();
    p.stop();
    rebuild(&bins, "cloister-executord");
    let m = measure(&bins);
    let kv = m["keyvault"]["measurement"].as_str().unwrap().to_owned();
    let new_exec = m["executor"]["measurement"].as_str().unwrap().to_owned();

    // Production-style: each role by hand, each with its own credentials.
    let data = p.data();
    let (gw_ex, gw_kv) = ("e".repeat(40), "k".repeat(40));
    let creds = root.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    creds_file(
        &creds.join("gateway"),
        &[("executor", &gw_ex), ("keyvault", &gw_kv)],
    );
    creds_file(&creds.join("keyvault"), &[("gateway", &gw_kv)]);
    creds_file(&creds.join("executor"), &[("gateway", &gw_ex)]);
    let port = || common::free_port().to_string();
    let (kv_rpc, kv_chan, ex, gw) = (port(), port(), port(), port());
    let log = |name: &str| std::fs::File::create(root.path().join(name)).unwrap();
    let spawn = |cmd: &mut Command, name: &str| {
        cmd.stdin(Stdio::null())
            .stdout(log(name))
            .stderr(log(name))
            .spawn()
            .unwrap()
    };
    let mut roles = Roles(vec![]);
    roles.0.push(spawn(
        Command::new(bins.join("cloister-keyvaultd"))
            .args(["run", "--listen", &format!("127.0.0.1:{kv_rpc}")])
            .args(["--channel-listen", &format!("127.0.0.1:{kv_chan}")])
            .arg("--credentials-file")
            .arg(creds.join("keyvault"))
            .arg("--data-dir")
            .arg(&data),
        "keyvault.log",
    ));
    roles.0.push(spawn(
        Command::new(bins.join("cloister-executord"))
            .args(["--listen", &format!("127.0.0.1:{ex}")])
            .args(["--keyvault-addr", &format!("127.0.0.1:{kv_chan}")])
            .args(["--keyvault-measurement", &kv])
            .arg("--credentials-file")
            .arg(creds.join("executor"))
            .arg("--data-dir")
            .arg(&data),
        "executor.log",
    ));
    roles.0.push(spawn(
        Command::new(common::BIN)
            .args(["gateway", "--listen", &format!("127.0.0.1:{gw}")])
            .args(["--executor-url", &format!("http://127.0.0.1:{ex}")])
            .args(["--keyvault-url", &format!("http://127.0.0.1:{kv_rpc}")])
            .args(["--executor-sim-root", &sim_root])
            .arg("--credentials-file")
            .arg(creds.join("gateway"))
            .arg("--data-dir")
            .arg(&data),
        "gateway.log",
    ));
    let url = format!("http://127.0.0.1:{gw}");
    // The new executor is not on keyvault's policy: no invocation reaches it, no secret
    // leaves keyvault, however long we wait.
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        match secret_read(&url, &p.token).await {
            Err(e) if e.contains("attestation_failed") => break e,
            Ok(v) => panic!("a rebuilt executor got the secret without approval: {v}"),
            Err(e) => {
                assert!(Instant::now() < deadline, "platform did not come up: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(refused.contains("could not prove itself"), "{refused}");
    assert!(
        !std::fs::read_to_string(root.path().join("keyvault.log"))
            .unwrap()
            .contains("DEVELOPMENT ONLY")
    );

    let fleet_released_to_new_build = || {
        let out = Command::new(common::BIN)
            .args(["--json", "audit", "list"])
            .env("CLOISTER_URL", &url)
            .env("CLOISTER_TOKEN", &p.token)
            .output()
            .unwrap();
        let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
        audit["entries"].as_array().unwrap().iter().any(|e| {
            e["action"] == "key.fleet_release" && e["actor"] == format!("executor:{new_exec}")
        })
    };
    assert!(
        !fleet_released_to_new_build(),
        "keyvault released fleet keys to an unapproved executor"
    );

    // An admin approves it explicitly: then it works.
    let policy = root.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "allow_simulated: true\nallowed_tee_types: [sim]\nallowed_measurements:\n  sim: [\"{new_exec}\"]\nmax_age_seconds: 120\n"
        ),
    )
    .unwrap();
    let set = Command::new(common::BIN)
        .args(["keyvault", "policy", "set"])
        .arg(&policy)
        .args(["--sim-root", &sim_root])
        .env("CLOISTER_URL", &url)
        .env("CLOISTER_TOKEN", &p.token)
        .env("CLOISTER_IDENTITY", p.admin_identity_path())
        .env("CLOISTER_CONFIG", root.path().join("cli-config.json"))
        .env("CLOISTER_TRUSTED_DIR", &bins)
        .output()
        .unwrap();
    ok(&set);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match secret_read(&url, &p.token).await {
            Ok(v) => {
                assert_eq!(v, "guarded");
                break;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "still refused after approval: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Approved, it also gets the fleet keys (its refresh retries every second).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fleet_released_to_new_build() {
        assert!(Instant::now() < deadline, "no fleet keys after approval");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_worker_file_replaced_under_a_running_executor_is_never_run() {
    let root = tempfile::tempdir().unwrap();
    let bins = bin_dir(root.path());
    let p = Platform::start_from(tempfile::tempdir().unwrap(), &bins.join("cloister"), &[]).await;
    // Someone on the host swaps the worker executable for their own program.
    let planted = root.path().join("planted");
    let worker = bins.join("cloister-worker");
    std::fs::remove_file(&worker).unwrap();
    std::fs::write(
        &worker,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", planted.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
    // New workers still start, from the copy the executor measured at start.
    deploy_and_put(&p, &bins, "still-sealed").await;
    assert_eq!(secret_read(&p.url, &p.token).await.unwrap(), "still-sealed");
    assert!(!planted.exists(), "the planted worker ran");
}
