//! Latency of warm invocations through the supervisor and a real worker process (no RPC, no
//! HTTP): `cargo run --release -p cloister-executor --example supervisor_profile -- <cloister-binary> [n]`

use std::sync::Arc;
use std::time::Instant;

use cloister_executor::ExecutorConfig;
use cloister_executor::pool::{FunctionSpec, Job, JobResult, Supervisor, code_hash};
use cloister_executor::secrets::{RunManifest, StaticManifests};
use cloister_types::Limits;
use serde_json::value::RawValue;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let exe = args.get(1).expect("path to the cloister binary").into();
    let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5000);
    let code = "function handler(p) { return { sum: p.a + p.b }; }";
    let manifests = StaticManifests::default();
    manifests.insert(RunManifest {
        function_id: "f".into(),
        version: 1,
        name: "add".into(),
        environment: "production".into(),
        runtime: "javascript".into(),
        entrypoint: "handler".into(),
        code_hash: code_hash(code),
        secrets: vec![],
        limits: Limits {
            timeout_ms: 5000,
            memory_mb: 64,
        },
        digest: "profile".into(),
        env: Default::default(),
        source_name: None,
        keys: Vec::new(),
    });
    let sup = Supervisor::new(ExecutorConfig::new(exe), Arc::new(manifests));
    let job = |i: usize, send: bool| Job {
        spec: FunctionSpec {
            function_id: "f".into(),
            version: 1,
            code_hash: code_hash(code),
            secrets_epoch: 0,
        },
        params: RawValue::from_string(r#"{"a":1,"b":2}"#.into()).expect("json"),
        code: send.then(|| code.to_owned()),
        execution_id: format!("e{i}"),
        expected: None,
    };
    assert!(matches!(
        sup.run(job(0, true)).await,
        JobResult::Ran { result: Ok(_), .. }
    ));
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let r = sup.run(job(i, false)).await;
        samples.push(t.elapsed());
        assert!(matches!(r, JobResult::Ran { result: Ok(_), .. }));
        if args.get(3).is_some() {
            // Simulate the gap a real client leaves between calls.
            tokio::time::sleep(std::time::Duration::from_micros(400)).await;
        }
    }
    samples.sort_unstable();
    let p = |q: f64| samples[((q * n as f64) as usize).min(n - 1)].as_secs_f64() * 1e6;
    println!(
        "supervisor round trip: n={n} p50={:.1}us p99={:.1}us",
        p(0.5),
        p(0.99)
    );
}
