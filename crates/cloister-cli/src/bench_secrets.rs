//! `cloister bench --secrets`: what secrets cost on the invocation path, and how fast keyvault
//! stores them.
//!
//! - warm `hello.js` with one secret (cached in the executor) against the same function with
//!   the secret read replaced by a constant and no declared secret;
//! - the first invocation after a rotation (epoch change → fetch over the established channel);
//! - sequential `secret put` (seal + HTTP + keyvault + durable write) per second.

use std::time::{Duration, Instant};

use anyhow::Context;
use cloister_client::Client;
use cloister_client::attestation::{TrustedKeyvault, seal_secret};
use cloister_types::wire::DeployRequest;
use cloister_types::{Environment, SecretPath, SecretRef};
use serde::Serialize;

use crate::bench::{Latency, latency};
use crate::cli::{BenchArgs, Conn, TrustArgs};

/// Results of the secrets benchmark.
#[derive(Debug, Serialize)]
pub struct SecretsReport {
    /// Warm `hello.js` reading one cached secret.
    pub warm_with_secret: Latency,
    /// The same function without secrets.
    pub warm_without_secrets: Latency,
    /// p50 difference, milliseconds.
    pub p50_overhead_ms: f64,
    /// The function with one secret at `clients` concurrent clients.
    pub throughput_with_secret: crate::bench::Throughput,
    /// The function without secrets, same clients, same run.
    pub throughput_without_secrets: crate::bench::Throughput,
    /// with / without.
    pub throughput_ratio: f64,
    /// First invocation after each rotation.
    pub first_after_rotation: Latency,
    /// Sequential puts per second.
    pub puts_per_second: f64,
    /// Puts measured.
    pub puts: usize,
    /// TEE label of keyvault.
    pub tee: String,
}

async fn deploy(
    c: &mut Client,
    name: &str,
    code: String,
    secrets: Vec<String>,
) -> anyhow::Result<String> {
    let req = DeployRequest {
        required_secrets: secrets,
        ..DeployRequest::javascript(name, code)
    };
    Ok(c.deploy(&req).await?.function_id)
}

async fn time_invoke(c: &mut Client, name: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    c.invoke(name, r#"{"a":2,"b":3}"#, None).await?;
    Ok(t.elapsed())
}

async fn put(
    c: &mut Client,
    kv: &TrustedKeyvault,
    path: &SecretPath,
    value: &str,
    rotate: bool,
) -> anyhow::Result<()> {
    let sealed = seal_secret(kv, path, value.as_bytes())?;
    c.put_secret(path, &sealed, rotate).await?;
    Ok(())
}

/// Runs the secrets benchmark against the server at `conn`.
pub async fn run(
    conn: &Conn,
    token: Option<String>,
    args: &BenchArgs,
) -> anyhow::Result<SecretsReport> {
    let mut c = Client::new(&conn.url, token)?;
    let trust = TrustArgs {
        sim_root: args.sim_root.clone(),
        keyvault_measurement: None,
        trusted_dir: None,
    };
    let kv = crate::secret_cmd::trusted_keyvault(&mut c, &conn.url, &trust).await?;
    let me = crate::identity_cmd::require(conn.identity.as_deref())?;
    let mut c = c.with_identity(me, Some(kv.audit_key.to_string()));
    let hello = std::fs::read_to_string(args.workloads.join("hello.js"))
        .with_context(|| format!("cannot read hello.js in {}", args.workloads.display()))?;
    let plain = hello.replace("secrets.API_KEY.length", "8");
    let with_id = deploy(&mut c, "bench-hello-secret", hello, vec!["API_KEY".into()]).await?;
    deploy(&mut c, "bench-hello-plain", plain, vec![]).await?;
    let key = SecretRef::parse("API_KEY")?;
    let path = SecretPath::for_function(&with_id, &Environment::default(), &key)?;
    put(&mut c, &kv, &path, "bench-value-0", false).await?;

    eprintln!(
        "bench: secrets: {} warm requests per variant…",
        args.requests
    );
    for _ in 0..20 {
        time_invoke(&mut c, "bench-hello-secret").await?;
        time_invoke(&mut c, "bench-hello-plain").await?;
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..args.requests {
        with.push(time_invoke(&mut c, "bench-hello-secret").await?);
        without.push(time_invoke(&mut c, "bench-hello-plain").await?);
    }

    eprintln!(
        "bench: secrets: {} clients for {} s per variant…",
        args.clients, args.seconds
    );
    let token = crate::client_cmds::resolve_token(conn.token.clone())?;
    let body = cloister_client::invoke_body("{}", None);
    let (throughput_with_secret, throughput_without_secrets) = crate::bench::load_pair(
        &conn.url,
        token,
        [
            "/v1/functions/bench-hello-secret/invoke",
            "/v1/functions/bench-hello-plain/invoke",
        ],
        body,
        args.clients,
        args.seconds,
    )
    .await?;

    let rotations = (args.requests / 10).clamp(20, 200);
    eprintln!("bench: secrets: {rotations} rotations, timing the first invocation after each…");
    let mut after = Vec::with_capacity(rotations);
    for i in 0..rotations {
        put(&mut c, &kv, &path, &format!("bench-value-{}", i + 1), true).await?;
        after.push(time_invoke(&mut c, "bench-hello-secret").await?);
    }

    let puts = args.requests.clamp(200, 2000);
    eprintln!("bench: secrets: {puts} sequential puts…");
    let bulk = SecretRef::parse("BULK")?;
    let bulk_path = SecretPath::for_function(&with_id, &Environment::default(), &bulk)?;
    let t = Instant::now();
    for i in 0..puts {
        put(&mut c, &kv, &bulk_path, &format!("bulk-{i}"), false).await?;
    }
    let puts_per_second = puts as f64 / t.elapsed().as_secs_f64();

    let warm_with_secret = latency(with);
    let warm_without_secrets = latency(without);
    Ok(SecretsReport {
        p50_overhead_ms: warm_with_secret.p50_ms - warm_without_secrets.p50_ms,
        throughput_ratio: throughput_with_secret.per_second
            / throughput_without_secrets.per_second.max(f64::MIN_POSITIVE),
        throughput_with_secret,
        throughput_without_secrets,
        warm_with_secret,
        warm_without_secrets,
        first_after_rotation: latency(after),
        puts_per_second,
        puts,
        tee: kv.tee_label,
    })
}

/// Prints the report for humans.
pub fn print_human(r: &SecretsReport) {
    let l = |x: &Latency| {
        format!(
            "p50 {:.3} ms  p99 {:.3} ms  ({} samples)",
            x.p50_ms, x.p99_ms, x.samples
        )
    };
    println!("secrets (keyvault tee: {})", r.tee);
    println!("  warm hello.js with 1 secret : {}", l(&r.warm_with_secret));
    println!(
        "  warm hello.js, no secrets   : {}",
        l(&r.warm_without_secrets)
    );
    println!(
        "  p50 overhead of the secret  : {:+.3} ms (target ≤ 0.15, read audited)",
        r.p50_overhead_ms
    );
    println!(
        "  {} clients, with / without   : {:.0}/s / {:.0}/s = {:.0} % (target ≥ 80 %)",
        r.throughput_with_secret.clients_count(),
        r.throughput_with_secret.per_second,
        r.throughput_without_secrets.per_second,
        r.throughput_ratio * 100.0
    );
    println!(
        "  first invoke after rotation : {} (target ≤ 5 ms)",
        l(&r.first_after_rotation)
    );
    println!(
        "  sequential secret put       : {:.0}/s over {} puts (target ≥ 500/s)",
        r.puts_per_second, r.puts
    );
}

/// Sequential deploy latency.
#[derive(Debug, Serialize)]
pub struct DeployReport {
    /// Whether manifests were signed (an identity was in use).
    pub signed: bool,
    /// Per deploy, client-side (signing included).
    pub latency: Latency,
}

/// `bench --deploys N`: N sequential deploys of new versions of one function. Without an
/// identity the requests carry no manifest (what servers before signed manifests accepted),
/// so the same binary measures an older server side by side.
pub async fn deploys(
    conn: &Conn,
    token: Option<String>,
    args: &BenchArgs,
) -> anyhow::Result<DeployReport> {
    let mut c = Client::new(&conn.url, token)?;
    let identity = crate::identity_cmd::load(conn.identity.as_deref())?;
    let signed = identity.is_some();
    if let Some(id) = identity {
        c = c.with_identity(id, None);
    }
    let code = std::fs::read_to_string(args.workloads.join("add.js"))
        .with_context(|| format!("cannot read add.js in {}", args.workloads.display()))?;
    let name = format!("bench-deploy-{:08x}", rand::random::<u32>());
    let req = DeployRequest::javascript(name, code);
    eprintln!("bench: {} sequential deploys…", args.deploys);
    c.deploy(&req).await?;
    let mut samples = Vec::with_capacity(args.deploys);
    for _ in 0..args.deploys {
        let t = Instant::now();
        c.deploy(&req).await?;
        samples.push(t.elapsed());
    }
    Ok(DeployReport {
        signed,
        latency: latency(samples),
    })
}
