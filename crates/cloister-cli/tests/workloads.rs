//! Every reference workload end to end over HTTP, with the outcome its README promises.

mod common;

use std::time::{Duration, Instant};

use common::{Platform, assert_api_error};
use serde_json::{Value, json};

fn result(r: &cloister_types::wire::InvokeResponse) -> Value {
    serde_json::from_str(r.result.get()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_workloads_return_their_documented_results() {
    let p = Platform::start().await;
    let mut c = p.admin();

    let add = p.deploy("add", "add.js", None).await;
    let r = c.invoke("add", r#"{"a":2,"b":3}"#, None).await.unwrap();
    assert_eq!(result(&r), json!({"sum": 5}));
    assert_eq!(
        (r.version, r.code_hash.as_str()),
        (1, add.code_hash.as_str())
    );

    p.deploy("json-transform", "json-transform.js", None).await;
    let orders = json!({"orders": [
        {"id": 1, "amount": 12.5, "status": "paid"},
        {"id": 2, "amount": 7.25, "status": "pending"},
        {"id": 3, "amount": 0.1, "status": "paid"},
        {"id": 4, "amount": 3, "status": "refunded"}
    ]});
    let r = c
        .invoke("json-transform", &orders.to_string(), None)
        .await
        .unwrap();
    assert_eq!(
        result(&r),
        json!({"count": 2, "total": 12.6, "byStatus": {"paid": 2, "pending": 1, "refunded": 1}})
    );

    p.deploy("sha256", "sha256.js", None).await;
    let r = c
        .invoke("sha256", r#"{"text":"abc","rounds":1}"#, None)
        .await
        .unwrap();
    assert_eq!(
        result(&r)["digest"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "FIPS 180-2 test vector"
    );

    p.deploy("async", "async.js", None).await;
    let r = c
        .invoke("async", r#"{"items":[1,2,3]}"#, None)
        .await
        .unwrap();
    assert_eq!(result(&r), json!({"doubled": [2, 4, 6]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_state_leaks_between_invocations_and_no_host_escape() {
    let p = Platform::start().await;
    let mut c = p.admin();
    p.deploy("state-leak", "state-leak.js", None).await;
    for _ in 0..20 {
        let r = c.invoke("state-leak", "{}", None).await.unwrap();
        assert_eq!(result(&r), json!({"seen": 0}));
    }
    p.deploy("escape-probe", "escape-probe.js", None).await;
    let r = c.invoke("escape-probe", "{}", None).await.unwrap();
    let found = result(&r);
    assert_eq!(
        found["reachable"],
        json!([]),
        "reachable from a function: {found}"
    );
    assert!(found["checked"].as_u64().unwrap() >= 40, "{found}");
    // The probe reports what it finds: the same probe after a host-like global is planted
    // names exactly that global.
    let mut c2 = p.admin();
    let planted = format!(
        "globalThis.setTimeout = function () {{}};\nglobalThis.fetch = function () {{}};\n{}",
        common::workload("escape-probe.js")
    );
    let req = cloister_types::wire::DeployRequest::javascript("escape-probe-planted", planted);
    c2.deploy(&req).await.unwrap();
    let r = c2.invoke("escape-probe-planted", "{}", None).await.unwrap();
    assert_eq!(result(&r)["reachable"], json!(["fetch", "setTimeout"]));
    // A FinalizationRegistry callback or a SharedArrayBuffer kept by one call reaches no
    // later call: neither API exists, and nothing planted is observed.
    p.deploy("finalizer-leak", "finalizer-leak.js", None).await;
    p.deploy("sab-timer", "sab-timer.js", None).await;
    for _ in 0..3 {
        for params in [r#"{"plant":true}"#, "{}"] {
            let r = c.invoke("finalizer-leak", params, None).await.unwrap();
            assert_eq!(result(&r), json!({"available": false, "observed": 0}));
            let r = c.invoke("sab-timer", params, None).await.unwrap();
            assert_eq!(result(&r), json!({"available": false, "carried": false}));
        }
    }
    // A job queued by one call never runs in (or delays) the next.
    p.deploy("planted-job", "planted-job.js", None).await;
    for _ in 0..3 {
        let r = c
            .invoke("planted-job", r#"{"plant":true}"#, None)
            .await
            .unwrap();
        assert_eq!(result(&r), json!({"observed": 0}));
        let started = Instant::now();
        let r = c.invoke("planted-job", "{}", None).await.unwrap();
        assert_eq!(result(&r), json!({"observed": 0}));
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the next call waited for the planted job: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_running_out_of_memory_is_the_memory_limit() {
    let p = Platform::start().await;
    let mut c = p.admin();
    p.deploy(
        "oom",
        "memory-ways.js",
        Some(json!({"memoryMb": 32, "timeoutMs": 20000})),
    )
    .await;
    let ways = result(&c.invoke("oom", "{}", None).await.unwrap())["ways"].clone();
    let ways: Vec<String> = serde_json::from_value(ways).unwrap();
    assert_eq!(ways.len(), 8, "{ways:?}");
    for way in &ways {
        let e = assert_api_error(
            c.invoke("oom", &json!({ "way": way }).to_string(), None)
                .await,
            "function_memory_limit",
            422,
        );
        assert_eq!(
            e.message, "function exceeded its memory limit of 32 MB",
            "{way}"
        );
        // The worker was replaced: the next call runs in a fresh one and succeeds.
        let r = c.invoke("oom", "{}", None).await.unwrap();
        assert_eq!(
            result(&r)["ways"].as_array().map(Vec::len),
            Some(8),
            "after {way}"
        );
    }
}

/// `Name:\tvalue` lines of `/proc/<pid>/status`.
fn proc_status(pid: u32) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_worker_runs_unprivileged_under_the_allow_list() {
    const BASE: u32 = 1_234_567;
    let p = Platform::start_with(&[
        "--worker-uid-base",
        &BASE.to_string(),
        "--worker-uid-count",
        "1000",
    ])
    .await;
    let mut c = p.admin();
    p.deploy("add", "add.js", None).await;
    c.invoke("add", r#"{"a":1,"b":2}"#, None).await.unwrap();
    // The worker stays idle in its pool after the call.
    let serve = p.child.as_ref().expect("serve runs").id();
    let workers: Vec<u32> = common::descendants(serve)
        .into_iter()
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmd.split(|&b| b == 0).any(|arg| arg == b"__worker")
        })
        .collect();
    assert!(!workers.is_empty(), "no live worker found");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    for pid in workers {
        let st = proc_status(pid);
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(st[set], "0000000000000000", "worker {pid} {set}: {st:?}");
        }
        if root {
            assert_eq!(st["CapBnd"], "0000000000000000", "worker {pid}: {st:?}");
            // From the configured range, the same for real, effective, saved and fs uid.
            let uids: Vec<u32> = st["Uid"].split('\t').map(|u| u.parse().unwrap()).collect();
            assert!(
                uids.iter()
                    .all(|&u| u == uids[0] && (BASE..BASE + 1000).contains(&u)),
                "worker {pid} uids {uids:?}"
            );
        }
        assert!(
            !st["Uid"].split('\t').any(|u| u == "0"),
            "worker {pid} runs as root: {st:?}"
        );
        assert!(!st["Gid"].split('\t').any(|g| g == "0"), "{st:?}");
        assert_eq!(st["NoNewPrivs"], "1");
        assert_eq!(st["Seccomp"], "2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_workloads_fail_with_their_codes_and_the_worker_is_replaced() {
    let p = Platform::start().await;
    let mut c = p.admin();

    p.deploy("loop", "infinite-loop.js", Some(json!({"timeoutMs": 500})))
        .await;
    let t0 = Instant::now();
    let e = assert_api_error(c.invoke("loop", "{}", None).await, "function_timeout", 422);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "deadline not enforced: {:?}",
        t0.elapsed()
    );
    assert!(
        e.message.contains("500"),
        "message names the deadline: {}",
        e.message
    );

    p.deploy("bomb", "memory-bomb.js", Some(json!({"memoryMb": 32})))
        .await;
    assert_api_error(
        c.invoke("bomb", "{}", None).await,
        "function_memory_limit",
        422,
    );

    p.deploy("recurse", "deep-recursion.js", None).await;
    let e = assert_api_error(c.invoke("recurse", "{}", None).await, "function_error", 422);
    assert!(
        e.message.to_lowercase().contains("stack"),
        "stack overflow named: {}",
        e.message
    );
    assert!(
        e.details["stack"].is_string(),
        "details.stack present: {:?}",
        e.details
    );

    // Each function still works after its worker was retired.
    assert_api_error(c.invoke("loop", "{}", None).await, "function_timeout", 422);
    assert_api_error(
        c.invoke("bomb", "{}", None).await,
        "function_memory_limit",
        422,
    );
    assert_api_error(c.invoke("recurse", "{}", None).await, "function_error", 422);

    let metrics = c.metrics().await.unwrap();
    let retired: f64 = metrics
        .lines()
        .find(|l| l.starts_with("cloister_workers_retired_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("workers_retired counter");
    assert!(
        retired >= 4.0,
        "timeout and memory workers must be retired, got {retired}"
    );
    // Per function: invocations by outcome and a latency histogram; names that resolve to
    // no function add no series.
    let _ = c.invoke("no-such-function", "{}", None).await;
    let metrics = c.metrics().await.unwrap();
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
    };
    assert!(
        value(r#"cloister_function_invocations_total{function="loop",outcome="function_timeout"}"#)
            >= 2.0
    );
    assert!(
        value(
            r#"cloister_function_invocations_total{function="bomb",outcome="function_memory_limit"}"#
        ) >= 2.0
    );
    assert!(value(r#"cloister_function_invocation_seconds_count{function="recurse"}"#) >= 2.0);
    assert!(!metrics.contains("no-such-function"), "{metrics}");
    // Other tenants' functions are not an invoker's business: the per-function series are
    // shown to admins only.
    let invoker = p.token(cloister_types::Role::Invoker, None).await;
    // A warm worker, so that the per-worker series exists (for admins).
    p.deploy("add", "add.js", None).await;
    c.invoke("add", r#"{"a":1,"b":2}"#, None).await.unwrap();
    let admin_view = c.metrics().await.unwrap();
    assert!(
        admin_view.contains("cloister_worker_resident_bytes{function_id="),
        "{admin_view}"
    );
    let scraped = p.client(Some(&invoker.token)).metrics().await.unwrap();
    assert!(scraped.contains("cloister_invocations_total"), "{scraped}");
    assert!(
        !scraped.contains("cloister_function_invocations"),
        "{scraped}"
    );
    assert!(!scraped.contains("function_id="), "{scraped}");
    assert!(scraped.trim_end().ends_with("# EOF"));
    assert_eq!(metrics.matches("# EOF").count(), 1);

    // A scraper's own token: every series, and nothing but /metrics.
    let scraper = c
        .create_token(&cloister_types::wire::TokenCreateRequest {
            role: cloister_types::Role::Metrics,
            label: Some("prometheus".into()),
            identity: None,
            functions: vec![],
        })
        .await
        .unwrap();
    let mut m = p.client(Some(&scraper.token));
    let scraped = m.metrics().await.unwrap();
    assert!(
        scraped.contains(r#"cloister_function_invocations_total{function="loop""#),
        "{scraped}"
    );
    assert_api_error(m.list().await, "forbidden", 403);
    assert_api_error(m.invoke("add", "{}", None).await, "forbidden", 403);
    assert_api_error(m.show("add", None).await, "forbidden", 403);
    // A scope of functions is an invoker token's alone.
    assert_api_error(
        c.create_token(&cloister_types::wire::TokenCreateRequest {
            role: cloister_types::Role::Metrics,
            label: None,
            identity: None,
            functions: vec!["add".into()],
        })
        .await,
        "invalid_request",
        400,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_answers_promptly_while_a_loop_and_a_memory_bomb_run() {
    let p = Platform::start().await;
    p.deploy("add", "add.js", None).await;
    p.deploy("loop", "infinite-loop.js", Some(json!({"timeoutMs": 4000})))
        .await;
    p.deploy("bomb", "memory-bomb.js", None).await;
    let mut c = p.admin();
    c.invoke("add", r#"{"a":1,"b":1}"#, None).await.unwrap();

    let mut hogs = Vec::new();
    for i in 0..4 {
        let mut hc = p.admin();
        let name = if i % 2 == 0 { "loop" } else { "bomb" };
        hogs.push(tokio::spawn(
            async move { hc.invoke(name, "{}", None).await },
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let t = Instant::now();
        let r = c
            .invoke("add", &format!(r#"{{"a":{i},"b":1}}"#), None)
            .await
            .unwrap();
        slowest = slowest.max(t.elapsed());
        assert_eq!(result(&r), json!({"sum": i + 1}));
    }
    let total = started.elapsed();
    // The loops hold their workers for 4 s; add must not queue behind them.
    assert!(
        total < Duration::from_millis(3000),
        "50 add calls took {total:?} next to the hogs"
    );
    assert!(
        slowest < Duration::from_millis(1000),
        "slowest add call took {slowest:?}"
    );
    for (i, h) in hogs.into_iter().enumerate() {
        let code = h.await.unwrap().unwrap_err().code().map(|c| c.as_str());
        let expected = if i % 2 == 0 {
            "function_timeout"
        } else {
            "function_memory_limit"
        };
        assert_eq!(code, Some(expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_logs_and_async_handlers_are_returned() {
    let p = Platform::start().await;
    let mut c = p.admin();
    let code = r#"
        async function handler(params, secrets, context) {
            context.log("hello", params.who, {n: 1});
            await null;
            return {
                fn: context.functionName, id: context.functionId, v: context.version,
                exec: context.executionId, deadline: typeof context.deadlineMs,
                secrets: Object.keys(secrets).length, frozen: Object.isFrozen(secrets)
            };
        }"#;
    let info = c
        .deploy(&cloister_types::wire::DeployRequest {
            required_secrets: vec!["API_KEY".into()],
            ..cloister_types::wire::DeployRequest::javascript("ctx", code)
        })
        .await
        .unwrap();
    assert_eq!(info.required_secrets, vec!["API_KEY"]);
    let root = p.sim_root();
    let out = p.cli_stdin(
        &[
            "secret",
            "put",
            "API_KEY",
            "--function",
            "ctx",
            "--from-stdin",
            "--sim-root",
            &root,
        ],
        b"k-value",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c.invoke("ctx", r#"{"who":"world"}"#, None).await.unwrap();
    assert_eq!(r.logs, vec![r#"hello world {"n":1}"#]);
    let v = result(&r);
    assert_eq!(v["fn"], "ctx");
    assert_eq!(v["id"], info.function_id.as_str());
    assert_eq!(v["v"], 1);
    assert_eq!(v["exec"], r.execution_id.as_str());
    assert_eq!(v["deadline"], "number");
    assert_eq!(v["secrets"], 1, "exactly the declared secret");
    assert_eq!(v["frozen"], true);
}
