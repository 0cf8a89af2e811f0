//! `cloister bench --sealed`: what sealing and receipts cost, plain against sealed `add.js`
//! in one run (docs/SEALED.md).
//!
//! - server CPU per call: run time (`/proc/PID/task/*/schedstat`, nanoseconds) of the local server processes (every process
//!   named `cloister*` other than this one, and their descendants: gateway, keyvault,
//!   executor, workers) in interleaved sequential rounds, per call: the median over rounds;
//! - sequential latency of each variant;
//! - throughput at `--clients`, plain and sealed alternating (plain, sealed, sealed, plain)
//!   with requests sealed before their timed phase (each request id runs once, and sealing is
//!   client work that must not compete with the server here);
//! - client-side cost of sealing, opening and verifying a receipt (medians).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use cloister_client::Client;
use cloister_client::attestation::TrustedKeyvault;
use cloister_client::receipt::{ReceiptTrust, verify_receipt};
use cloister_client::sealed::{SealedCall, Target, pick_key, seal_call};
use cloister_types::sealed::SealedInvokeResponse;
use cloister_types::wire::{DeployRequest, InvokeRequest};
use hyper::Method;
use serde::Serialize;

use crate::bench::{Latency, Phase, Throughput, latency};
use crate::bench_cpu::{CpuPerCall, CpuSnapshot};
use crate::cli::{BenchArgs, Conn, TrustArgs};

/// Results of the sealed benchmark.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedReport {
    /// Plain calls, sequential.
    pub plain: Latency,
    /// Sealed calls, sequential.
    pub sealed: Latency,
    /// Sealed calls asking for a receipt, sequential (the signer's evidence left out, as the
    /// SDK asks once it verified it).
    pub sealed_with_receipt: Latency,
    /// Sealed calls asking for a receipt that carries the signer's evidence every time.
    pub sealed_with_full_receipt: Latency,
    /// Server CPU per plain call, microseconds.
    pub server_cpu_us_plain: f64,
    /// Server CPU per sealed call, microseconds.
    pub server_cpu_us_sealed: f64,
    /// Server CPU per sealed call with a receipt, microseconds.
    pub server_cpu_us_sealed_receipt: f64,
    /// Server CPU per sealed call with a receipt carrying the evidence, microseconds.
    pub server_cpu_us_sealed_full_receipt: f64,
    /// Sealed minus plain, microseconds per call.
    pub sealed_cpu_overhead_us: f64,
    /// With minus without a receipt, microseconds per call.
    pub receipt_cpu_overhead_us: f64,
    /// With a receipt carrying the evidence minus without a receipt, microseconds per call.
    pub full_receipt_cpu_overhead_us: f64,
    /// Calls each CPU figure is averaged over.
    pub cpu_calls: usize,
    /// Server processes the CPU was summed over (at the end).
    pub server_processes: usize,
    /// Plain throughput.
    pub throughput_plain: Throughput,
    /// Sealed throughput (pre-sealed requests).
    pub throughput_sealed: Throughput,
    /// sealed / plain.
    pub throughput_ratio: f64,
    /// Server CPU per call by role during the plain throughput phases, µs.
    pub throughput_cpu_plain: CpuPerCall,
    /// Server CPU per call by role during the sealed throughput phases, µs.
    pub throughput_cpu_sealed: CpuPerCall,
    /// The bench's own CPU per call (the clients) during the plain throughput phases, µs.
    pub throughput_client_us_plain: f64,
    /// The bench's own CPU per call during the sealed throughput phases, µs.
    pub throughput_client_us_sealed: f64,
    /// Median client time to seal one request, microseconds.
    pub client_seal_us: f64,
    /// Median client time to open one answer, microseconds.
    pub client_open_us: f64,
    /// Median client time to verify one receipt (signer evidence and signature), µs.
    pub client_receipt_verify_us: f64,
    /// TEE label of keyvault.
    pub tee: String,
}

/// CPU nanoseconds of the local server processes, and how many there are.
fn server_cpu_ns() -> (u64, usize) {
    let s = crate::bench_cpu::CpuSnapshot::take();
    (s.total_ns(), s.processes())
}

/// The request body for `call`; `evidence`: ask for the signer's evidence even when known.
fn body(call: &SealedCall, evidence: bool) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&InvokeRequest {
            params: None,
            version: None,
            sealed: Some(call.input.clone()),
            receipt_nonce: call.receipt.as_ref().map(|(n, _)| n.clone()),
            // As the SDK does: after the first receipt the executor's evidence is left out.
            receipt_signer: call
                .receipt
                .as_ref()
                .filter(|_| !evidence)
                .and_then(|(_, t)| t.cache.known_signer(&t.root_fingerprint)),
        })
        .unwrap_or_default(),
    )
}

/// Runs `bodies` sequentially; returns per-call latencies and the server CPU they took.
async fn batch(
    c: &mut Client,
    path: &str,
    bodies: Vec<Bytes>,
) -> anyhow::Result<(Vec<Duration>, u64)> {
    let mut lat = Vec::with_capacity(bodies.len());
    let (t0, _) = server_cpu_ns();
    for b in bodies {
        let t = Instant::now();
        let r = c.raw(Method::POST, path, Some(b)).await?;
        if r.status != 200 {
            bail!(
                "invocation failed: HTTP {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        lat.push(t.elapsed());
    }
    let (t1, _) = server_cpu_ns();
    Ok((lat, t1.saturating_sub(t0)))
}

fn median_us(mut v: Vec<Duration>) -> f64 {
    v.sort_unstable();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// Runs the sealed benchmark against the server at `conn`.
pub async fn run(
    conn: &Conn,
    token: Option<String>,
    args: &BenchArgs,
) -> anyhow::Result<SealedReport> {
    let mut c = Client::new(&conn.url, token.clone())?;
    // Server CPU is read from this machine's processes named `cloister*`: meaningful only
    // against a platform on this machine, with no other one running.
    let local = conn
        .url
        .parse::<hyper::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .is_some_and(|h| matches!(h.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1"));
    if !local {
        eprintln!(
            "bench: warning: {} is not on this machine; the server CPU figures count this \
             machine's `cloister*` processes and mean nothing for it",
            conn.url
        );
    }
    let trust = TrustArgs {
        sim_root: args.sim_root.clone(),
        keyvault_measurement: None,
        trusted_dir: None,
    };
    let kv: TrustedKeyvault =
        crate::secret_cmd::trusted_keyvault(&mut c, &conn.url, &trust).await?;
    if let Some(id) = crate::identity_cmd::load(conn.identity.as_deref())? {
        c = c.with_identity(id, None);
    }
    let code = std::fs::read_to_string(args.workloads.join("add.js"))
        .with_context(|| format!("cannot read add.js in {}", args.workloads.display()))?;
    let name = format!("bench-sealed-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let f = c
        .deploy(&DeployRequest::javascript(name.clone(), code))
        .await?;
    let result = measure(&mut c, conn, token, args, &kv, &name, &f).await;
    if let Err(e) = c.delete(&name).await {
        eprintln!("warning: could not delete {name}: {e}");
    }
    result
}

async fn measure(
    c: &mut Client,
    conn: &Conn,
    token: Option<String>,
    args: &BenchArgs,
    kv: &TrustedKeyvault,
    name: &str,
    f: &cloister_types::wire::FunctionInfo,
) -> anyhow::Result<SealedReport> {
    let params = r#"{"a":2,"b":3}"#;
    let path = format!("/v1/functions/{name}/invoke");
    let target: Target = c.verified_target(kv, name, Some(f.version)).await?.target;
    let receipt_trust = ReceiptTrust::new(
        kv.root_fingerprint.clone(),
        kv.executor_measurements.clone(),
    );
    let now = || u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    let key = pick_key(&kv.fleet_keys, now())
        .context("keyvault's bundle holds no fleet key valid now")?
        .clone();
    let mut seal_times = Vec::new();
    let mut seal = |receipt: bool| -> anyhow::Result<SealedCall> {
        let t = Instant::now();
        let mut call = seal_call(&key, &target, params, now())?;
        seal_times.push(t.elapsed());
        if receipt {
            call = call.ask_receipt(receipt_trust.clone())?;
        }
        Ok(call)
    };
    // Warm-up (and a check that answers open and receipts verify).
    c.invoke(name, params, None)
        .await
        .context("cold invocation")?;
    let mut open_times = Vec::new();
    let mut verify_times = Vec::new();
    for _ in 0..50 {
        let call = seal(true)?;
        let r = c.raw(Method::POST, &path, Some(body(&call, false))).await?;
        let a: SealedInvokeResponse = serde_json::from_slice(&r.body)
            .with_context(|| format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)))?;
        let t = Instant::now();
        let opened = call.open(&a.execution_id, &a.outcome, &a.sealed)?;
        open_times.push(t.elapsed());
        if opened.result.map_err(|e| anyhow::anyhow!("{e:?}"))?.get() != r#"{"sum":5}"# {
            bail!("the sealed add.js did not return {{\"sum\":5}}");
        }
        let receipt = a.receipt.context("no receipt")?;
        let t = Instant::now();
        let v = verify_receipt(&receipt, &receipt_trust)?;
        if v.complete(receipt).signer.evidence.is_empty() {
            bail!("a receipt without its signer's evidence");
        }
        verify_times.push(t.elapsed());
        c.raw(
            Method::POST,
            &path,
            Some(cloister_client::invoke_body(params, None)),
        )
        .await?;
    }
    // Interleaved sequential batches: plain, sealed, sealed with a receipt (evidence left
    // out, as the SDK asks once it knows the signer), and with one carrying the evidence.
    // Rounds of `per` calls per variant, interleaved; server CPU per call is the median over
    // rounds, so a worker retiring mid-round (its run time leaves with it) skews one round only.
    let rounds = 8;
    let per = (args.requests / rounds).max(1);
    let mut lat: HashMap<&str, Vec<Duration>> = HashMap::new();
    let mut cpu: HashMap<&str, Vec<u64>> = HashMap::new();
    eprintln!(
        "bench: sealed: {} sequential calls per variant in {rounds} interleaved rounds…",
        per * rounds
    );
    for _ in 0..rounds {
        for variant in ["plain", "sealed", "receipt", "receipt-full"] {
            let bodies: Vec<Bytes> = match variant {
                "plain" => vec![cloister_client::invoke_body(params, None); per],
                v => (0..per)
                    .map(|_| seal(v != "sealed").map(|c| body(&c, v == "receipt-full")))
                    .collect::<anyhow::Result<_>>()?,
            };
            let (l, t) = batch(c, &path, bodies).await?;
            lat.entry(variant).or_default().extend(l);
            cpu.entry(variant).or_default().push(t);
        }
    }
    let calls = per * rounds;
    let us_per_call = |v: &str| {
        let mut ns = cpu.get(v).cloned().unwrap_or_default();
        ns.sort_unstable();
        let mid = ns.len() / 2;
        let median = match ns.len() {
            0 => 0.0,
            n if n % 2 == 0 => (ns[mid - 1] + ns[mid]) as f64 / 2.0,
            _ => ns[mid] as f64,
        };
        median / 1e3 / per as f64
    };
    // Throughput, plain and sealed alternating (plain, sealed, sealed, plain; half the time
    // each) so that a noisy machine's drift falls on both alike. Requests are sealed before
    // their phases, each used once: as many as the first plain phase managed, with margin.
    eprintln!(
        "bench: sealed: throughput at {} clients for {} s per variant (plain, sealed, sealed, plain)…",
        args.clients, args.seconds
    );
    let half = args.seconds / 2.0;
    let plain_body = cloister_client::invoke_body(params, None);
    let plain_phase = || {
        crate::bench::run_phase(&conn.url, token.clone(), &path, args.clients, half, |_| {
            std::iter::repeat(plain_body.clone())
        })
    };
    let mut plain_cpu = PhaseCpu::default();
    let mut sealed_cpu = PhaseCpu::default();
    let first_plain = plain_cpu.around(plain_phase()).await?;
    let per_phase = (first_plain.requests() as f64 * 1.5) as usize;
    let mut sealed_phases = Vec::new();
    for _ in 0..2 {
        let bodies = (0..per_phase.max(1000))
            .map(|_| seal(false).map(|c| body(&c, false)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let per_client = bodies.len().div_ceil(args.clients.max(1));
        let chunks: Vec<Vec<Bytes>> = bodies
            .chunks(per_client.max(1))
            .map(<[Bytes]>::to_vec)
            .collect();
        sealed_phases.push(
            sealed_cpu
                .around(crate::bench::run_phase(
                    &conn.url,
                    token.clone(),
                    &path,
                    args.clients,
                    half,
                    |i| chunks.get(i).cloned().unwrap_or_default().into_iter(),
                ))
                .await?,
        );
    }
    let last_plain = plain_cpu.around(plain_phase()).await?;
    let throughput_plain = Throughput::from_phases(args.clients, vec![first_plain, last_plain]);
    let throughput_sealed = Throughput::from_phases(args.clients, sealed_phases);
    let (_, server_processes) = server_cpu_ns();
    let plain_us = us_per_call("plain");
    let sealed_us = us_per_call("sealed");
    let receipt_us = us_per_call("receipt");
    let full_us = us_per_call("receipt-full");
    Ok(SealedReport {
        plain: latency(lat.remove("plain").unwrap_or_default()),
        sealed: latency(lat.remove("sealed").unwrap_or_default()),
        sealed_with_receipt: latency(lat.remove("receipt").unwrap_or_default()),
        sealed_with_full_receipt: latency(lat.remove("receipt-full").unwrap_or_default()),
        server_cpu_us_plain: plain_us,
        server_cpu_us_sealed: sealed_us,
        server_cpu_us_sealed_receipt: receipt_us,
        server_cpu_us_sealed_full_receipt: full_us,
        sealed_cpu_overhead_us: sealed_us - plain_us,
        receipt_cpu_overhead_us: receipt_us - sealed_us,
        full_receipt_cpu_overhead_us: full_us - sealed_us,
        cpu_calls: calls,
        server_processes,
        throughput_ratio: if throughput_plain.per_second > 0.0 {
            throughput_sealed.per_second / throughput_plain.per_second
        } else {
            0.0
        },
        throughput_cpu_plain: plain_cpu.per_call(),
        throughput_cpu_sealed: sealed_cpu.per_call(),
        throughput_client_us_plain: plain_cpu.client_per_call(),
        throughput_client_us_sealed: sealed_cpu.client_per_call(),
        throughput_plain,
        throughput_sealed,
        client_seal_us: median_us(seal_times),
        client_open_us: median_us(open_times),
        client_receipt_verify_us: median_us(verify_times),
        tee: kv.tee_label.clone(),
    })
}

/// CPU of the server's roles and of the bench summed over throughput phases of one kind.
#[derive(Default)]
struct PhaseCpu {
    sum: CpuPerCall,
    client_ns: u64,
    calls: usize,
}

impl PhaseCpu {
    /// Runs `phase`, adding the CPU each role spent during it.
    async fn around(
        &mut self,
        phase: impl std::future::Future<Output = anyhow::Result<Phase>>,
    ) -> anyhow::Result<Phase> {
        let (before, own) = (CpuSnapshot::take(), crate::bench_cpu::own_ns());
        let p = phase.await?;
        let (after, own_after) = (CpuSnapshot::take(), crate::bench_cpu::own_ns());
        let n = p.requests();
        let d = before.per_call(&after, 1);
        self.sum.total_us += d.total_us;
        self.sum.gateway_us += d.gateway_us;
        self.sum.executor_us += d.executor_us;
        self.sum.keyvault_us += d.keyvault_us;
        self.sum.workers_us += d.workers_us;
        self.client_ns += own_after.saturating_sub(own);
        self.calls += n;
        Ok(p)
    }

    fn per_call(&self) -> CpuPerCall {
        let n = self.calls.max(1) as f64;
        CpuPerCall {
            total_us: self.sum.total_us / n,
            gateway_us: self.sum.gateway_us / n,
            executor_us: self.sum.executor_us / n,
            keyvault_us: self.sum.keyvault_us / n,
            workers_us: self.sum.workers_us / n,
        }
    }

    fn client_per_call(&self) -> f64 {
        self.client_ns as f64 / 1000.0 / self.calls.max(1) as f64
    }
}

/// Prints the report for people.
pub fn print_human(r: &SealedReport) {
    println!("sealed invocations of add.js ({}):", r.tee);
    for (what, l) in [
        ("plain", &r.plain),
        ("sealed", &r.sealed),
        ("sealed + receipt", &r.sealed_with_receipt),
        ("  with evidence", &r.sealed_with_full_receipt),
    ] {
        println!(
            "  {what:<18} p50 {:.3} ms  p99 {:.3} ms  ({} calls)",
            l.p50_ms, l.p99_ms, l.samples
        );
    }
    println!(
        "  server CPU/call    plain {:.1} µs, sealed {:.1} µs (+{:.1}), with receipt {:.1} µs (+{:.1}; with its evidence {:.1} µs, +{:.1})  [{} processes, {} calls each]",
        r.server_cpu_us_plain,
        r.server_cpu_us_sealed,
        r.sealed_cpu_overhead_us,
        r.server_cpu_us_sealed_receipt,
        r.receipt_cpu_overhead_us,
        r.server_cpu_us_sealed_full_receipt,
        r.full_receipt_cpu_overhead_us,
        r.server_processes,
        r.cpu_calls
    );
    println!(
        "  throughput         plain {:.0}/s, sealed {:.0}/s ({:.1} %) at {} clients",
        r.throughput_plain.per_second,
        r.throughput_sealed.per_second,
        r.throughput_ratio * 100.0,
        r.throughput_plain.clients_count()
    );
    for (what, c, client) in [
        (
            "plain",
            &r.throughput_cpu_plain,
            r.throughput_client_us_plain,
        ),
        (
            "sealed",
            &r.throughput_cpu_sealed,
            r.throughput_client_us_sealed,
        ),
    ] {
        println!(
            "    CPU/call {what:<7} {:.1} µs (gateway {:.1}, executor {:.1}, keyvault {:.1}, workers {:.1}); bench {:.1} µs",
            c.total_us, c.gateway_us, c.executor_us, c.keyvault_us, c.workers_us, client
        );
    }
    println!(
        "  client             seal {:.1} µs, open {:.1} µs, receipt verify {:.1} µs (medians)",
        r.client_seal_us, r.client_open_us, r.client_receipt_verify_us
    );
}
