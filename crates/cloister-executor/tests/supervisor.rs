//! The supervisor's own enforcement, independent of the engine: a worker that never answers is
//! killed at the deadline, a crashed worker is replaced, and code must match its hash.
//! The workers here are tiny bash scripts that speak the frame protocol and then misbehave.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_executor::ExecutorConfig;
use cloister_executor::pool::{FunctionSpec, Job, JobResult, Supervisor, code_hash};
use cloister_executor::secrets::{RunManifest, StaticManifests};
use cloister_types::{ErrorCode, Limits};
use serde_json::value::RawValue;

/// Shell prelude of a fake worker: `send JSON` writes one length-prefixed frame to the channel.
const PRELUDE: &str = r#"#!/bin/bash
send() {
  local n=${#1}
  printf "$(printf '\\x%02x\\x%02x\\x%02x\\x00' $((n & 255)) $(((n >> 8) & 255)) $(((n >> 16) & 255)))%s" "$1" >&3
}
send '{"Loaded":{"Ok":{"filesystem_isolated":false,"privileges":"ExecutorUid"}}}'
"#;

/// A worker that answers `1` to two invocations.
const ANSWERS: &str = r#"send '{"Done":{"result":{"Ok":1},"logs_dropped":0,"retire":false}}'
send '{"Done":{"result":{"Ok":1},"logs_dropped":0,"retire":false}}'
exec sleep 3600
"#;

/// Reads one frame from the supervisor and discards it.
const SKIP: &str = r#"skip() {
  local n
  n=$(dd bs=4 count=1 <&3 2>/dev/null | od -An -tu4 | tr -d ' ')
  dd bs="$n" count=1 iflag=fullblock <&3 >/dev/null 2>&1
}
"#;

/// A worker that logs two lines during its invocation, then never finishes.
const LOGS_THEN_STUCK: &str = r#"skip; skip
send '{"Call":{"id":0,"request":{"log":{"line":"one"}}}}'
send '{"Call":{"id":0,"request":{"log":{"line":"two"}}}}'
exec sleep 3600
"#;

/// A worker that sends the 100 log lines a worker may, and says it dropped 57 more itself.
const LOG_FULL: &str = r#"skip; skip
for i in $(seq 1 100); do send "{\"Call\":{\"id\":0,\"request\":{\"log\":{\"line\":\"line $i\"}}}}"; done
send '{"Done":{"result":{"Ok":1},"logs_dropped":57,"retire":false}}'
exec sleep 3600
"#;

/// A worker that sends more log lines than a worker ever does (its own limit is 100).
const LOG_FLOOD: &str = r#"echo $$ > "$0.pid"
skip; skip
for i in $(seq 1 150); do send "{\"Call\":{\"id\":0,\"request\":{\"log\":{\"line\":\"line $i\"}}}}"; done
exec sleep 3600
"#;

/// A worker that makes 258 requests (two over the per-invocation limit), writing each answer
/// to `$0.answers`, then finishes.
const REQUESTS: &str = r#"skip; skip
for i in $(seq 1 258); do
  send "{\"Call\":{\"id\":$i,\"request\":{\"public_key\":{\"key\":\"k$i\"}}}}"
  n=$(dd bs=4 count=1 <&3 2>/dev/null | od -An -tu4 | tr -d ' ')
  dd bs="$n" count=1 iflag=fullblock <&3 2>/dev/null >> "$0.answers"
  echo >> "$0.answers"
done
send '{"Done":{"result":{"Ok":1},"logs_dropped":0,"retire":false}}'
exec sleep 3600
"#;

/// A worker that loads, then never answers (as one blocked in a native call would).
const STUCK: &str = "echo $$ > \"$0.pid\"\nexec sleep 3600\n";

/// A worker that loads, then dies in the middle of an invocation (it reads the Load frame
/// and the start of the Invoke frame first, so the crash is never mistaken for a failed start).
const CRASHES: &str = r#"n=$(dd bs=1 count=4 <&3 2>/dev/null | od -An -tu4 | tr -d ' ')
dd bs=1 count="$n" <&3 >/dev/null 2>&1
dd bs=1 count=4 <&3 >/dev/null 2>&1
exit 3
"#;

/// Writes a fake worker speaking the real frame protocol, for the supervisor alone.
fn fake_worker(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{PRELUDE}{SKIP}{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The manifests of every job below (as keyvault would grant them).
fn manifests() -> Arc<StaticManifests> {
    let m = StaticManifests::default();
    for (code, timeout_ms) in [
        ("stuck", 300),
        ("crash", 1000),
        ("ok", 1000),
        ("calls", 60_000),
    ] {
        m.insert(RunManifest {
            function_id: format!("fn-{code}"),
            version: 1,
            name: code.to_owned(),
            environment: "production".into(),
            runtime: "javascript".into(),
            entrypoint: "handler".into(),
            code_hash: code_hash(code),
            secrets: vec![],
            limits: Limits {
                timeout_ms,
                memory_mb: 16,
            },
            digest: format!("digest-{code}"),
            env: Default::default(),
            source_name: None,
            keys: Vec::new(),
            egress: None,
        });
    }
    Arc::new(m)
}

fn supervisor(exe: PathBuf) -> Arc<Supervisor> {
    Supervisor::new(ExecutorConfig::new(exe), manifests())
}

/// A job for `code` under function `fn-<code>`; the timeout comes from its manifest.
fn job(code: &str, send_code: bool) -> Job {
    Job {
        spec: FunctionSpec {
            function_id: format!("fn-{code}"),
            version: 1,
            code_hash: code_hash(code),
            secrets_epoch: 0,
        },
        params: RawValue::from_string("null".into()).unwrap(),
        code: send_code.then(|| code.to_owned()),
        execution_id: "e".into(),
        expected: None,
    }
}

fn failure_code(r: JobResult) -> ErrorCode {
    match r {
        JobResult::Ran { result: Err(f), .. } => f.code,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_answers_is_killed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(fake_worker(&dir, "stuck", STUCK));
    let started = Instant::now();
    let r = sup.run(job("stuck", true)).await;
    let took = started.elapsed();
    assert_eq!(failure_code(r), ErrorCode::FunctionTimeout);
    assert!(
        took >= Duration::from_millis(300),
        "answered before the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "supervisor deadline not enforced: {took:?}"
    );
    let (workers, spawned, _, _) = sup.snapshot();
    assert_eq!(spawned, 1);
    assert!(workers.is_empty(), "the stuck worker is discarded");
    // And killed, not merely abandoned.
    let pid: u32 = std::fs::read_to_string(dir.path().join("stuck.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pid_alive(pid), "the stuck worker {pid} is still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(fake_worker(&dir, "crashes", CRASHES));
    assert_eq!(
        failure_code(sup.run(job("crash", true)).await),
        ErrorCode::FunctionError
    );
    assert_eq!(
        failure_code(sup.run(job("crash", false)).await),
        ErrorCode::FunctionError
    );
    let (workers, spawned, _, _) = sup.snapshot();
    assert_eq!(spawned, 2, "each crash is followed by a fresh worker");
    assert!(workers.is_empty(), "crashed workers are not kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_is_requested_once_and_checked_against_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(fake_worker(&dir, "answers", ANSWERS));
    assert!(matches!(
        sup.run(job("ok", false)).await,
        JobResult::CodeRequired
    ));
    let mut forged = job("ok", true);
    forged.code = Some("something else".into());
    assert_eq!(
        failure_code(sup.run(forged).await),
        ErrorCode::InvalidRequest
    );
    assert!(matches!(
        sup.run(job("ok", true)).await,
        JobResult::Ran { result: Ok(_), .. }
    ));
    // Now cached by hash: no code needed.
    assert!(matches!(
        sup.run(job("ok", false)).await,
        JobResult::Ran { result: Ok(_), .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_code_under_a_function_id_is_refused_before_any_worker_starts() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(fake_worker(&dir, "answers", ANSWERS));
    // The gateway names function `fn-ok` but sends (and hashes) other code: the hash is
    // consistent with the code, yet not the one `fn-ok`'s manifest names.
    let evil = "function handler(p, s) { return s; }";
    let mut j = job("ok", true);
    j.spec.code_hash = code_hash(evil);
    j.code = Some(evil.to_owned());
    assert_eq!(failure_code(sup.run(j).await), ErrorCode::ManifestMismatch);
    // An unknown function id is refused too.
    let mut j = job("ok", true);
    j.spec.function_id = "fn-nobody".into();
    assert_eq!(failure_code(sup.run(j).await), ErrorCode::FunctionNotFound);
    let (_, spawned, _, _) = sup.snapshot();
    assert_eq!(spawned, 0, "no worker ran refused code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_total_is_a_hard_cap_with_a_clear_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ExecutorConfig::new(fake_worker(&dir, "stuck", STUCK));
    cfg.max_workers_total = 2;
    let sup = Supervisor::new(cfg, manifests());
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let sup = sup.clone();
            tokio::spawn(async move { sup.run(job("stuck", true)).await })
        })
        .collect();
    let waited = Instant::now();
    while sup.snapshot().1 < 2 {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "workers did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Both places are taken by busy workers: a third call is refused at once, not queued
    // and not given a third process.
    let started = Instant::now();
    let r = sup.run(job("stuck", false)).await;
    match r {
        JobResult::Ran { result: Err(f), .. } => {
            assert_eq!(f.code, ErrorCode::Unavailable);
            assert!(f.message.contains("maximum of 2 workers"), "{}", f.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(250));
    assert_eq!(sup.snapshot().1, 2, "no third worker was started");
    for b in busy {
        assert_eq!(failure_code(b.await.unwrap()), ErrorCode::FunctionTimeout);
    }
    // The places come back when the stuck workers are killed.
    assert_eq!(
        failure_code(sup.run(job("stuck", false)).await),
        ErrorCode::FunctionTimeout
    );
    assert_eq!(sup.snapshot().1, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_abandoned_half_way_gives_its_place_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ExecutorConfig::new(fake_worker(&dir, "stuck", STUCK));
    cfg.max_workers_total = 1;
    let sup = Supervisor::new(cfg, manifests());
    for round in 0..3 {
        // The caller goes away while its worker runs (the RPC future is dropped).
        let call = {
            let sup = sup.clone();
            tokio::spawn(async move { sup.run(job("stuck", true)).await })
        };
        let waited = Instant::now();
        while sup.live_workers() < 1 {
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "no worker started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        call.abort();
        let _ = call.await;
        let waited = Instant::now();
        while sup.live_workers() > 0 {
            assert!(
                waited.elapsed() < Duration::from_secs(2),
                "round {round}: the abandoned call kept its place"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The only place is free: a new call gets a worker (and times out), not `unavailable`.
    assert_eq!(
        failure_code(sup.run(job("stuck", false)).await),
        ErrorCode::FunctionTimeout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_an_idle_worker_makes_room_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ExecutorConfig::new(fake_worker(&dir, "answers", ANSWERS));
    cfg.max_workers_total = 1;
    let sup = Supervisor::new(cfg, manifests());
    // `ok` leaves an idle worker in the only place; `crash` (another function) needs a
    // place: the idle worker is evicted and the new one starts, no `unavailable`.
    assert!(matches!(
        sup.run(job("ok", true)).await,
        JobResult::Ran { result: Ok(_), .. }
    ));
    assert_eq!(sup.live_workers(), 1);
    let r = sup.run(job("crash", true)).await;
    assert!(
        matches!(&r, JobResult::Ran { result: Ok(_), .. }),
        "expected the evicted place to be reused, got {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_checks_take_only_a_few_places() {
    use cloister_executor::pool::{MAX_VALIDATIONS, ValidateError};
    let dir = tempfile::tempdir().unwrap();
    // A worker that never finishes loading holds its validation until the deadline.
    let never = dir.path().join("never");
    std::fs::write(&never, "#!/bin/bash\nexec sleep 3600\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&never, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let sup = Supervisor::new(ExecutorConfig::new(never), manifests());
    let limits = Limits {
        timeout_ms: 1000,
        memory_mb: 16,
    };
    let checks: Vec<_> = (0..MAX_VALIDATIONS)
        .map(|_| {
            let sup = sup.clone();
            tokio::spawn(async move { sup.validate("x".into(), "handler", limits).await })
        })
        .collect();
    let waited = Instant::now();
    while sup.live_workers() < MAX_VALIDATIONS {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "checks did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    match sup.validate("x".into(), "handler", limits).await {
        Err(ValidateError::Unavailable(m)) => assert!(m.contains("retry"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(250));
    for c in checks {
        let _ = c.await.unwrap();
    }
}

fn logs_of(r: &JobResult) -> &[String] {
    match r {
        JobResult::Ran { logs, .. } => logs,
        other => panic!("expected a run, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_logged_before_a_timeout_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(fake_worker(&dir, "logs-stuck", LOGS_THEN_STUCK));
    let r = sup.run(job("stuck", true)).await;
    assert_eq!(logs_of(&r), ["one", "two"]);
    assert_eq!(failure_code(r), ErrorCode::FunctionTimeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_bounds_log_lines_itself_and_counts_what_the_worker_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(fake_worker(&dir, "full", LOG_FULL));
    let r = sup.run(job("calls", true)).await;
    let logs = logs_of(&r);
    assert_eq!(logs.len(), 101, "100 lines and the count of dropped ones");
    assert_eq!(logs[0], "line 1");
    assert_eq!(logs[99], "line 100");
    assert_eq!(logs[100], "[57 log lines dropped: limit reached]");
    assert!(matches!(&r, JobResult::Ran { result: Ok(_), .. }), "{r:?}");

    // More lines than a worker sends: the worker is stopped, what it logged is kept.
    let flood = fake_worker(&dir, "flood", LOG_FLOOD);
    let sup = supervisor(flood.clone());
    let r = sup.run(job("calls", true)).await;
    assert_eq!(logs_of(&r).len(), 100);
    assert_eq!(failure_code(r), ErrorCode::FunctionError);
    let pid: u32 = std::fs::read_to_string(format!("{}.pid", flood.display()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !pid_alive(pid),
        "the flooding worker {pid} is still running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_in_turn_refused_without_a_grant_and_limited_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let exe = fake_worker(&dir, "requests", REQUESTS);
    let sup = supervisor(exe.clone());
    let r = sup.run(job("calls", true)).await;
    assert!(matches!(&r, JobResult::Ran { result: Ok(_), .. }), "{r:?}");
    let answers = std::fs::read_to_string(format!("{}.answers", exe.display())).unwrap();
    let answers: Vec<serde_json::Value> = answers
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 258);
    for (i, a) in answers.iter().enumerate() {
        let a = &a["Answer"];
        assert_eq!(a["id"], i + 1, "each answer names its request");
        let want = if i < 256 {
            "capability_not_granted"
        } else {
            "rate_limited"
        };
        assert_eq!(a["result"]["Err"]["code"], want, "request {}: {a}", i + 1);
    }
}
