//! The platform's life: first start, Ctrl-C, restart with state kept, children cleaned up.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Platform, spawn_serve};

/// Children of every thread of `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_and_ctrl_c_stops_every_process() {
    let mut p = Platform::start().await;
    let token_file = p.data().join("admin.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin.token must be private");
    // Every file the platform creates is private, and the recovery key (output redirected
    // here, as in CI) went to a 0600 file, never into the log.
    for f in [
        "gateway.db",
        "keyvault.db",
        "recovery.key",
        "keyvault.guard",
        "admin.identity",
    ] {
        let mode = std::fs::metadata(p.data().join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f} must be private");
    }
    let recovery = std::fs::read_to_string(p.data().join("recovery.key")).unwrap();
    assert!(recovery.trim().len() > 20);
    assert!(
        !p.log().contains(recovery.trim()),
        "the recovery key is not in the log"
    );
    assert!(
        p.log().contains("recovery key:"),
        "the banner names its file"
    );
    assert!(
        p.log().contains("admin token:") && p.log().contains("(created"),
        "{}",
        p.log()
    );
    assert!(
        p.log().contains("SIMULATED"),
        "the simulated TEE is labelled"
    );

    let info = p.deploy("add", "add.js", None).await;
    let mut c = p.admin();
    c.invoke("add", r#"{"a":1,"b":1}"#, None).await.unwrap();
    // One platform per data directory: a second `serve` on it stops at once, naming the
    // running one, and so does a restore.
    let serve_pid = p.child.as_ref().unwrap().id();
    let second_log = p.dir.path().join("second.log");
    let mut second = spawn_serve(&p.data(), common::free_port(), &second_log);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second serve on the same data directory kept running");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    let out = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        out.contains(&format!(
            "is in use by a running `cloister serve` (pid {serve_pid})"
        )),
        "{out}"
    );
    let data = p.data();
    let o = p.cli(&[
        "keyvault",
        "restore",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        data.join("keyvault.db").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("stop it before restoring"), "{err}");
    c.invoke("add", r#"{"a":2,"b":2}"#, None).await.unwrap();
    // serve → {keyvault, executor → workers, gateway}
    let serve_pid = p.child.as_ref().unwrap().id();
    let roles = children_of(serve_pid);
    assert_eq!(
        roles.len(),
        3,
        "serve runs keyvault, an executor and a gateway"
    );
    // The trusted roles dump no core.
    for role in ["keyvault", "executor"] {
        let pid = common::child_pid(serve_pid, role).expect(role);
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        assert!(
            core.split_whitespace().skip(4).take(2).all(|v| v == "0"),
            "{role}: {core}"
        );
    }
    let workers: Vec<u32> = roles.iter().flat_map(|r| children_of(*r)).collect();
    assert!(!workers.is_empty(), "a warm worker exists");

    let status = p.stop();
    assert!(status.success(), "clean exit on Ctrl-C: {status:?}");
    std::thread::sleep(Duration::from_millis(300));
    for pid in roles.iter().chain(&workers) {
        assert!(!alive(*pid), "process {pid} outlived the platform");
    }

    // Restart on the same data dir: same token, same function, same id and hash.
    let token_before = std::fs::read_to_string(&token_file).unwrap();
    let dir = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    drop(p);
    let p = Platform::start_in(dir).await;
    assert_eq!(
        std::fs::read_to_string(token_file_of(&p)).unwrap(),
        token_before,
        "token kept"
    );
    assert!(
        !p.log().contains("(created"),
        "no new token on restart: {}",
        p.log()
    );
    let mut c = p.admin();
    let again = c.show("add", None).await.unwrap();
    assert_eq!(
        (again.function_id, again.code_hash),
        (info.function_id, info.code_hash)
    );
    let r = c.invoke("add", r#"{"a":40,"b":2}"#, None).await.unwrap();
    assert_eq!(r.result.get(), r#"{"sum":42}"#);
}

fn token_file_of(p: &Platform) -> std::path::PathBuf {
    p.data().join("admin.token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_fails_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut child = spawn_serve(&dir.path().join("data"), port, &log);
    let status = child.wait().unwrap();
    assert!(!status.success());
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.contains("cannot listen on") && out.contains(&port.to_string()),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_dev_explains_itself() {
    let o = std::process::Command::new(common::BIN)
        .args(["serve"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--dev"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_admin_token_is_not_resurrected_on_restart() {
    let mut p = Platform::start().await;
    let mut c = p.admin();
    let spare = p.token(cloister_types::Role::Admin, None).await;
    let dev_id = c
        .list_tokens()
        .await
        .unwrap()
        .tokens
        .into_iter()
        .find(|t| t.label.as_deref() == Some("dev admin"))
        .unwrap()
        .id;
    c.revoke_token(&dev_id).await.unwrap();
    p.stop();
    let dir = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    drop(p);
    let p = Platform::start_in(dir).await;
    assert!(p.log().contains("revoked or unknown"), "{}", p.log());
    common::assert_api_error(p.admin().list().await, "unauthorized", 401);
    p.client(Some(&spare.token)).list().await.unwrap();
}

/// Waits until the server log holds a line for `execution_id` (log writes are asynchronous to
/// the response).
async fn log_line_for(p: &Platform, needle: &str) -> String {
    for _ in 0..100 {
        if let Some(l) = p.log().lines().find(|l| l.contains(needle)) {
            return l.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no log line with {needle}:\n{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invocation_logs_one_line_of_metadata_as_text_or_json() {
    // JSON, as asked on the command line, from the gateway the platform started.
    let p = Platform::start_with(&["--log-format", "json"]).await;
    p.deploy("add", "add.js", None).await;
    let marker = "param-marker-7f3a";
    let r = p
        .admin()
        .invoke("add", &format!(r#"{{"a":1,"b":2,"m":"{marker}"}}"#), None)
        .await
        .unwrap();
    let line = log_line_for(&p, &r.execution_id).await;
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["target"], "cloister::invocation", "{v}");
    assert_eq!(v["function"], "add");
    assert_eq!(v["version"], 1);
    assert_eq!(v["outcome"], "ok");
    assert_eq!(v["sealed"], false);
    assert!(v["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{v}");
    assert_eq!(v["worker_replaced"], false, "{v}");
    // A call that meets its deadline costs its worker: the line says so.
    p.deploy(
        "spin",
        "infinite-loop.js",
        Some(serde_json::json!({"timeoutMs": 200})),
    )
    .await;
    let _ = p.admin().invoke("spin", "{}", None).await;
    let spin = log_line_for(&p, "\"function\":\"spin\"").await;
    let v: serde_json::Value = serde_json::from_str(&spin).unwrap();
    assert_eq!(
        (v["outcome"].as_str(), v["worker_replaced"].as_bool()),
        (Some("function_timeout"), Some(true)),
        "{v}"
    );
    // A failure is logged with its code; an unknown function too.
    let _ = p.admin().invoke("ghost", "{}", None).await;
    let ghost = log_line_for(&p, "\"function\":\"ghost\"").await;
    assert!(
        ghost.contains("\"outcome\":\"function_not_found\""),
        "{ghost}"
    );
    let log = p.log();
    assert!(!log.contains(marker), "parameters are never logged");
    assert!(!log.contains('\u{1b}'), "no ANSI escapes in a file");
    // Every role writes JSON: each log line that is not serve's banner parses.
    let json_lines = log.lines().filter(|l| l.starts_with('{')).count();
    assert!(json_lines >= 3, "{log}");

    // Text by default, still without colours when not on a terminal.
    let q = Platform::start().await;
    q.deploy("add", "add.js", None).await;
    let r = q
        .admin()
        .invoke("add", r#"{"a":1,"b":2}"#, None)
        .await
        .unwrap();
    let line = log_line_for(&q, &r.execution_id).await;
    assert!(line.contains("cloister::invocation"), "{line}");
    assert!(line.contains("function=\"add\""), "{line}");
    assert!(line.contains("outcome=\"ok\""), "{line}");
    assert!(!q.log().contains('\u{1b}'), "no ANSI escapes in a file");
}
