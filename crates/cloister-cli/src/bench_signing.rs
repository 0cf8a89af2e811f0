//! `cloister bench --signing`: what `context.sign` costs a warm function, and the floor.
//!
//! - a warm function that signs once with an Ed25519 key in keyvault against the same function
//!   without the call, sequential requests interleaved (latency), then `--clients` concurrent
//!   clients per variant (throughput), same run;
//! - the floor: the same Ed25519 signature made in this process with the same crate.

use std::time::{Duration, Instant};

use cloister_authority::ops::{KeyOp, KeyWrite};
use cloister_client::Client;
use cloister_crypto::keys::{KeyAlgorithm, KeyMaterial, SignHash};
use cloister_types::wire::DeployRequest;
use serde::Serialize;

use crate::bench::{Latency, Throughput, latency};
use crate::bench_cpu::{CpuPerCall, CpuSnapshot};
use crate::cli::{BenchArgs, Conn, TrustArgs};

/// The function without the call.
const PLAIN: &str = "async function handler(p, s, c) {\n  return { n: p.msg.length };\n}\n";
/// The same function signing its input once.
const SIGNS: &str = "async function handler(p, s, c) {\n  const r = await c.sign(\"k\", p.msg);\n  return { n: r.signature.length };\n}\n";
/// The parameters of every call.
const PARAMS: &str = r#"{"msg":"transfer 5 to alice"}"#;

/// Results of the signing benchmark.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningReport {
    /// The function signing once, warm.
    pub warm_signing: Latency,
    /// The same function without the call.
    pub warm_plain: Latency,
    /// p50 difference, milliseconds.
    pub p50_added_ms: f64,
    /// The signing function at `clients` concurrent clients.
    pub throughput_signing: Throughput,
    /// The plain function, same clients, same run.
    pub throughput_plain: Throughput,
    /// signing / plain.
    pub throughput_ratio: f64,
    /// The signature alone, in this process (aws-lc-rs Ed25519), microseconds.
    pub in_process_sign_p50_us: f64,
    /// Server CPU per call of the signing function at `clients`, by role.
    pub cpu_signing: CpuPerCall,
    /// The same for the plain function.
    pub cpu_plain: CpuPerCall,
    /// TEE label of keyvault.
    pub tee: String,
}

async fn time_invoke(c: &mut Client, name: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    c.invoke(name, PARAMS, None).await?;
    Ok(t.elapsed())
}

/// Runs the signing benchmark against the server at `conn`.
pub async fn run(
    conn: &Conn,
    token: Option<String>,
    args: &BenchArgs,
) -> anyhow::Result<SigningReport> {
    let mut c = Client::new(&conn.url, token)?;
    let trust = TrustArgs {
        sim_root: args.sim_root.clone(),
        keyvault_measurement: None,
        trusted_dir: None,
    };
    let kv = crate::secret_cmd::trusted_keyvault(&mut c, &conn.url, &trust).await?;
    let me = crate::identity_cmd::require(conn.identity.as_deref())?;
    let mut c = c.with_identity(me, Some(kv.audit_key.to_string()));
    c.deploy(&DeployRequest::javascript("bench-sign-plain", PLAIN))
        .await?;
    let f = c
        .deploy(&DeployRequest {
            required_keys: vec!["k".into()],
            ..DeployRequest::javascript("bench-sign-ed25519", SIGNS)
        })
        .await?;
    let have = c.keys("bench-sign-ed25519").await?;
    if !have.keys.iter().any(|k| k.name == "k") {
        c.write_key(&KeyWrite {
            function_id: f.function_id.clone(),
            function: "bench-sign-ed25519".into(),
            name: "k".into(),
            op: KeyOp::Create {
                algorithm: "ed25519".into(),
                exportable: false,
            },
        })
        .await?;
    }

    eprintln!(
        "bench: signing: {} warm requests per variant, interleaved…",
        args.requests
    );
    for _ in 0..50 {
        time_invoke(&mut c, "bench-sign-ed25519").await?;
        time_invoke(&mut c, "bench-sign-plain").await?;
    }
    let (mut signing, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..args.requests {
        signing.push(time_invoke(&mut c, "bench-sign-ed25519").await?);
        plain.push(time_invoke(&mut c, "bench-sign-plain").await?);
    }

    eprintln!(
        "bench: signing: {} clients for {} s per variant…",
        args.clients, args.seconds
    );
    let token = crate::client_cmds::resolve_token(conn.token.clone())?;
    let body = cloister_client::invoke_body(PARAMS, None);
    // Each variant's phase is timed with the CPU every server process used during it.
    let phase = async |path: &str| -> anyhow::Result<(Throughput, CpuPerCall)> {
        let before = CpuSnapshot::take();
        let t = crate::bench::load(
            &conn.url,
            token.clone(),
            path,
            body.clone(),
            args.clients,
            args.seconds,
        )
        .await?;
        let cpu = before.per_call(&CpuSnapshot::take(), t.requests_count() as usize);
        Ok((t, cpu))
    };
    let (throughput_signing, cpu_signing) =
        phase("/v1/functions/bench-sign-ed25519/invoke").await?;
    let (throughput_plain, cpu_plain) = phase("/v1/functions/bench-sign-plain/invoke").await?;

    let key = KeyMaterial::generate(KeyAlgorithm::Ed25519)?;
    let mut floor = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let t = Instant::now();
        std::hint::black_box(key.sign(b"transfer 5 to alice", SignHash::Sha256)?);
        floor.push(t.elapsed());
    }
    let floor = latency(floor);

    let warm_signing = latency(signing);
    let warm_plain = latency(plain);
    Ok(SigningReport {
        p50_added_ms: warm_signing.p50_ms - warm_plain.p50_ms,
        throughput_ratio: throughput_signing.per_second
            / throughput_plain.per_second.max(f64::MIN_POSITIVE),
        throughput_signing,
        throughput_plain,
        warm_signing,
        warm_plain,
        in_process_sign_p50_us: floor.p50_ms * 1000.0,
        cpu_signing,
        cpu_plain,
        tee: kv.tee_label,
    })
}

/// Prints the report for humans.
pub fn print_human(r: &SigningReport) {
    let l = |x: &Latency| {
        format!(
            "p50 {:.3} ms  p99 {:.3} ms  ({} samples)",
            x.p50_ms, x.p99_ms, x.samples
        )
    };
    println!("signing (keyvault tee: {})", r.tee);
    println!("  warm, one Ed25519 context.sign : {}", l(&r.warm_signing));
    println!("  warm, the same without it     : {}", l(&r.warm_plain));
    println!(
        "  p50 added by the call         : {:+.3} ms (target ≤ 0.3)",
        r.p50_added_ms
    );
    println!(
        "  {} clients, signing / plain    : {:.0}/s / {:.0}/s = {:.0} % (target ≥ 70 %)",
        r.throughput_signing.clients_count(),
        r.throughput_signing.per_second,
        r.throughput_plain.per_second,
        r.throughput_ratio * 100.0
    );
    println!(
        "  floor: the signature in process: p50 {:.1} µs",
        r.in_process_sign_p50_us
    );
    let cpu = |c: &CpuPerCall| {
        format!(
            "{:>6.0} µs (gateway {:.0}, executor {:.0}, keyvault {:.0}, workers {:.0})",
            c.total_us, c.gateway_us, c.executor_us, c.keyvault_us, c.workers_us
        )
    };
    println!(
        "  server CPU per call, signing    : {}",
        cpu(&r.cpu_signing)
    );
    println!("  server CPU per call, plain      : {}", cpu(&r.cpu_plain));
}
