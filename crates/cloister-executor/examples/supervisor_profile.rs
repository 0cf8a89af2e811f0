//! Latency and CPU of warm invocations through the supervisor and a real worker process (no
//! RPC, no HTTP, no keyvault): a plain function and the same function calling `context.sign`
//! once, answered at once by an in-process Ed25519 key, interleaved. The difference is what a
//! host call costs the worker and the supervisor.
//!
//! `cargo run --release -p cloister-executor --example supervisor_profile -- <cloister-worker> [n] [gap]`
//! (`gap`: sleep 400 µs between calls, as a real client leaves).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_crypto::keys::{KeyAlgorithm, KeyMaterial, SignHash};
use cloister_executor::ExecutorConfig;
use cloister_executor::pool::{FunctionSpec, Job, JobResult, Supervisor, code_hash};
use cloister_executor::secrets::{
    GrantFuture, GrantRequest, KeyAnswer, KeyFuture, KeyRequest, RunManifest, SecretSource,
    StaticManifests,
};
use cloister_types::Limits;
use serde_json::value::RawValue;

const PLAIN: &str = "async function handler(p, s, c) { return { n: p.msg.length }; }";
const SIGNS: &str = "async function handler(p, s, c) { const r = await c.sign('k', p.msg); return { n: r.signature.length }; }";

/// Manifests from memory; signatures by a key in this process.
struct LocalKeys {
    manifests: StaticManifests,
    key: KeyMaterial,
}

impl SecretSource for LocalKeys {
    fn grant<'a>(&'a self, req: GrantRequest<'a>) -> GrantFuture<'a> {
        self.manifests.grant(req)
    }

    fn key<'a>(&'a self, req: KeyRequest) -> KeyFuture<'a> {
        Box::pin(async move {
            let s = self.key.sign(&req.message, SignHash::Sha256).expect("sign");
            Ok(KeyAnswer {
                algorithm: "ed25519".into(),
                key_version: 1,
                signature: s.bytes,
                public_key: self.key.public_key().expect("public").unwrap_or_default(),
                recovery_id: None,
            })
        })
    }
}

fn manifest(id: &str, code: &str, keys: &[&str]) -> RunManifest {
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
        digest: "profile".into(),
        env: Default::default(),
        source_name: None,
        keys: keys.iter().map(|k| k.to_string()).collect(),
        egress: None,
    }
}

/// Run time of this process's children (the workers), nanoseconds.
fn children_cpu_ns() -> u64 {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|c| stat[c + 1..].split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(me) {
            total += std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// Run time of this process, nanoseconds.
fn own_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|rd| {
            rd.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let exe = args.get(1).expect("path to the worker executable").into();
    let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5000);
    let gap = args.get(3).is_some();
    let manifests = StaticManifests::default();
    manifests.insert(manifest("plain", PLAIN, &[]));
    manifests.insert(manifest("signs", SIGNS, &["k"]));
    let source = LocalKeys {
        manifests,
        key: KeyMaterial::generate(KeyAlgorithm::Ed25519).expect("key"),
    };
    let sup = Supervisor::new(ExecutorConfig::new(exe), Arc::new(source));
    let job = |id: &str, code: &str, i: usize, send: bool| Job {
        spec: FunctionSpec {
            function_id: id.into(),
            version: 1,
            code_hash: code_hash(code),
            secrets_epoch: 0,
        },
        params: RawValue::from_string(r#"{"msg":"transfer 5 to alice"}"#.into()).expect("json"),
        code: send.then(|| code.to_owned()),
        execution_id: format!("e{i}"),
        expected: None,
    };
    for (id, code) in [("plain", PLAIN), ("signs", SIGNS)] {
        let r = sup.run(job(id, code, 0, true)).await;
        assert!(matches!(r, JobResult::Ran { result: Ok(_), .. }), "{id}");
    }
    let mut samples = [Vec::with_capacity(n), Vec::with_capacity(n)];
    let mut cpu = [(0u64, 0u64); 2];
    // Blocks of 250 calls per variant, alternating; CPU is read between blocks only.
    let block = 250.min(n);
    for round in 0..n.div_ceil(block) {
        for (k, (id, code)) in [("plain", PLAIN), ("signs", SIGNS)].into_iter().enumerate() {
            let (w0, s0) = (children_cpu_ns(), own_cpu_ns());
            for i in round * block..((round + 1) * block).min(n) {
                let t = Instant::now();
                let r = sup.run(job(id, code, i, false)).await;
                samples[k].push(t.elapsed());
                assert!(matches!(r, JobResult::Ran { result: Ok(_), .. }));
                if gap {
                    tokio::time::sleep(Duration::from_micros(400)).await;
                }
            }
            cpu[k].0 += children_cpu_ns().saturating_sub(w0);
            cpu[k].1 += own_cpu_ns().saturating_sub(s0);
        }
    }
    for (k, label) in ["plain", "context.sign"].into_iter().enumerate() {
        let s = &mut samples[k];
        s.sort_unstable();
        let p = |q: f64| s[((q * n as f64) as usize).min(n - 1)].as_secs_f64() * 1e6;
        println!(
            "{label:<13} n={n} p50={:.1}us p99={:.1}us  CPU per call: worker {:.1}us, supervisor {:.1}us",
            p(0.5),
            p(0.99),
            cpu[k].0 as f64 / n as f64 / 1000.0,
            cpu[k].1 as f64 / n as f64 / 1000.0,
        );
    }
}
