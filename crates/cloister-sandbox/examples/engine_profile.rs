//! Measures the in-process latency of one warm invocation (no IPC, no HTTP): median and p99.
//! The worker's idle-time `prepare()` runs between calls, outside the measurement, as it does
//! in a real worker.
//! `cargo run --release -p cloister-sandbox --example engine_profile [file.js] [params] [n]`

use std::collections::BTreeMap;
use std::time::Instant;

use cloister_sandbox::engine::Engine;
use cloister_sandbox::protocol::{InvocationContext, Invoke, Load};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("../../examples/workloads/add.js");
    let params = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| r#"{"a":2,"b":3}"#.to_owned());
    let n: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let code = std::fs::read_to_string(file).expect("workload file");
    let load = Load {
        code,
        entrypoint: "handler".into(),
        memory_bytes: 64 << 20,
        stack_bytes: 1 << 20,
        load_timeout_ms: 5000,
        max_output_bytes: 1 << 20,
        source_name: "function.js".into(),
        env: Default::default(),
        keys: Vec::new(),
        egress: false,
    };
    let mut engine = Engine::new(
        load,
        std::rc::Rc::new(cloister_sandbox::host::LocalHost::default()),
    )
    .expect("loads");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let inv = Invoke {
            params: serde_json::value::RawValue::from_string(params.clone()).expect("json"),
            secrets: BTreeMap::new(),
            context: InvocationContext {
                function_name: "f".into(),
                function_id: "id".into(),
                version: 1,
                execution_id: format!("e{i}"),
                timeout_ms: 5000,
            },
            binary_secrets: Default::default(),
            secret_refs: Default::default(),
        };
        let t = Instant::now();
        let out = engine.invoke(inv);
        samples.push(t.elapsed());
        assert!(out.result.is_ok(), "{:?}", out.result);
        // What the worker does after replying, off the request path.
        engine.prepare();
    }
    samples.sort_unstable();
    let p = |q: f64| samples[((q * n as f64) as usize).min(n - 1)].as_secs_f64() * 1e6;
    println!("{file}: n={n} p50={:.1}us p99={:.1}us", p(0.5), p(0.99));
}
