//! Latency of a warm function that makes one `fetch` to an HTTPS server on loopback, against
//! the same function without the fetch and against a plain rustls + hyper client asking the
//! same server on a kept-alive connection (the server's own time, seen from a client), all
//! interleaved in one run. Through the supervisor and a real worker process (no RPC, no
//! HTTP front, no keyvault).
//!
//! `cargo run --release -p cloister-executor --example fetch_profile -- <cloister-worker> [n]`
//!
//! Added by `fetch` = p50(fetching function) − p50(plain function) − p50(direct client).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_egress::testing::{Leaf, PlainClient, TestCa, TestServer};
use cloister_executor::ExecutorConfig;
use cloister_executor::pool::{FunctionSpec, Job, JobResult, Supervisor, code_hash};
use cloister_executor::secrets::{RunManifest, StaticManifests};
use cloister_types::Limits;
use cloister_types::egress::{Egress, ExtraRoot};
use serde_json::value::RawValue;

const PLAIN: &str = "async function handler(p) { return { n: p.url.length }; }";
const FETCHES: &str =
    "async function handler(p) { const r = await fetch(p.url); return { n: (await r.json()).n }; }";

fn manifest(id: &str, code: &str, egress: Option<&Egress>) -> RunManifest {
    RunManifest {
        function_id: id.into(),
        version: 1,
        name: id.into(),
        environment: "production".into(),
        runtime: "javascript".into(),
        entrypoint: "handler".into(),
        code_hash: code_hash(code),
        secrets: vec![],
        limits: Limits {
            timeout_ms: 5000,
            memory_mb: 64,
        },
        digest: format!("profile-{id}"),
        env: Default::default(),
        source_name: None,
        keys: vec![],
        egress: egress.map(|e| Arc::new(e.check(&[]).expect("policy"))),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let exe = args.get(1).expect("path to the worker executable").into();
    let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(3000);
    let ca = TestCa::new();
    let srv = TestServer::https(ca.server_config(&Leaf::default())).await;
    let origin = format!("https://127.0.0.1:{}", srv.port());
    let policy = Egress {
        allow: vec![origin.clone()],
        ca: vec![ExtraRoot {
            pem: ca.pem().to_owned(),
            origins: vec![origin.clone()],
        }],
        secrets: Default::default(),
    };
    let manifests = StaticManifests::default();
    manifests.insert(manifest("plain", PLAIN, None));
    manifests.insert(manifest("fetches", FETCHES, Some(&policy)));
    let sup = Supervisor::new(ExecutorConfig::new(exe), Arc::new(manifests));
    let params = format!(r#"{{"url":"{origin}/json"}}"#);
    let job = |id: &str, code: &str, i: usize, send: bool| Job {
        spec: FunctionSpec {
            function_id: id.into(),
            version: 1,
            code_hash: code_hash(code),
            secrets_epoch: 0,
        },
        params: RawValue::from_string(params.clone()).expect("json"),
        code: send.then(|| code.to_owned()),
        execution_id: format!("e{id}{i}"),
        expected: None,
    };
    for (id, code) in [("plain", PLAIN), ("fetches", FETCHES)] {
        let r = sup.run(job(id, code, 0, true)).await;
        assert!(matches!(r, JobResult::Ran { result: Ok(_), .. }), "{id}");
    }
    let mut client = PlainClient::connect(&ca, srv.addr).await;
    let mut samples: [Vec<Duration>; 3] = Default::default();
    let block = 250.min(n);
    for round in 0..n.div_ceil(block) {
        for i in round * block..((round + 1) * block).min(n) {
            for (k, (id, code)) in [("plain", PLAIN), ("fetches", FETCHES)]
                .into_iter()
                .enumerate()
            {
                let t = Instant::now();
                let r = sup.run(job(id, code, i + 1, false)).await;
                samples[k].push(t.elapsed());
                assert!(matches!(r, JobResult::Ran { result: Ok(_), .. }), "{id}");
            }
            let t = Instant::now();
            assert_eq!(client.get("/json").await, 18);
            samples[2].push(t.elapsed());
        }
    }
    let mut p50 = [0.0; 3];
    for (k, label) in ["plain function", "fetching function", "direct client"]
        .into_iter()
        .enumerate()
    {
        let s = &mut samples[k];
        s.sort_unstable();
        let p = |q: f64| s[((q * s.len() as f64) as usize).min(s.len() - 1)].as_secs_f64() * 1e6;
        p50[k] = p(0.5);
        println!("{label:<19} n={n} p50={:.1}us p99={:.1}us", p(0.5), p(0.99));
    }
    println!(
        "added by fetch (p50): {:.1}us = {:.1} - {:.1} - {:.1}  (connections the server accepted: {})",
        p50[1] - p50[0] - p50[2],
        p50[1],
        p50[0],
        p50[2],
        srv.seen().connections
    );
}
