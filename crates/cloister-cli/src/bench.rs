//! `cloister bench`: latency, throughput, cold start and worker memory over real HTTP.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use cloister_client::Client;
use cloister_types::wire::DeployRequest;
use hyper::Method;
use rand::RngExt as _;
use serde::Serialize;

use crate::cli::{BenchArgs, Conn};
use crate::output;

/// Workloads measured by default, with the params they are invoked with.
fn default_workloads() -> Vec<(&'static str, String)> {
    let orders: Vec<_> = (0..50)
        .map(|i: u32| {
            let status = ["paid", "pending", "refunded"][i as usize % 3];
            serde_json::json!({
                "id": i,
                "amount": f64::from((i * 37) % 100) + 0.25,
                "status": status,
            })
        })
        .collect();
    vec![
        ("add", r#"{"a":2,"b":3}"#.to_owned()),
        (
            "json-transform",
            serde_json::json!({ "orders": orders }).to_string(),
        ),
        ("sha256", r#"{"text":"abc","rounds":1}"#.to_owned()),
        ("async", r#"{"items":[1,2,3]}"#.to_owned()),
        ("state-leak", "{}".to_owned()),
    ]
}

/// Latency summary in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
    /// Number of samples.
    pub samples: usize,
}

/// Percentiles of `samples`.
pub fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let pick = |p: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let idx = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[idx].as_secs_f64() * 1000.0
    };
    Latency {
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        max_ms: pick(1.0),
        samples: samples.len(),
    }
}

/// Throughput phase result.
#[derive(Debug, Serialize)]
pub struct Throughput {
    clients: usize,
    seconds: f64,
    requests: u64,
    errors: u64,
    /// Successful requests per second.
    pub per_second: f64,
    latency: Latency,
}

/// One workload's figures.
#[derive(Debug, Serialize)]
struct WorkloadReport {
    workload: String,
    cold_ms: f64,
    warm: Latency,
    throughput: Throughput,
    worker_rss_bytes: Option<u64>,
    warm_workers: usize,
}

/// The whole run.
#[derive(Debug, Serialize)]
struct Report {
    url: String,
    tee: &'static str,
    workloads: Vec<WorkloadReport>,
    node_baseline: Option<Throughput>,
    add_vs_node_ratio: Option<f64>,
}

impl Throughput {
    /// The figures of `samples` successful requests (and `errors`) over `seconds`.
    pub fn new(clients: usize, seconds: f64, samples: Vec<Duration>, errors: u64) -> Self {
        let requests = samples.len() as u64;
        Self {
            clients,
            seconds,
            requests,
            errors,
            per_second: requests as f64 / seconds.max(f64::MIN_POSITIVE),
            latency: latency(samples),
        }
    }

    /// Concurrent clients used.
    pub fn clients_count(&self) -> usize {
        self.clients
    }

    /// Successful requests.
    pub fn requests_count(&self) -> u64 {
        self.requests
    }
}

/// One timed phase: the latencies of successful requests, the failures, the wall time.
pub struct Phase {
    samples: Vec<Duration>,
    errors: u64,
    seconds: f64,
}

impl Phase {
    /// Successful requests.
    pub fn requests(&self) -> usize {
        self.samples.len()
    }
}

impl Throughput {
    /// The figures of phases run one after another (their times and requests summed).
    pub fn from_phases(clients: usize, phases: Vec<Phase>) -> Self {
        let seconds = phases.iter().map(|p| p.seconds).sum();
        let errors = phases.iter().map(|p| p.errors).sum();
        let samples = phases.into_iter().flat_map(|p| p.samples).collect();
        Self::new(clients, seconds, samples, errors)
    }
}

/// Runs `body` against `path` from `clients` connections for `seconds`.
pub async fn load(
    url: &str,
    token: Option<String>,
    path: &str,
    body: Bytes,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<Throughput> {
    let phase = run_phase(url, token, path, clients, seconds, |_| {
        std::iter::repeat(body.clone())
    })
    .await?;
    Ok(Throughput::from_phases(clients, vec![phase]))
}

/// Runs `body` against each of `paths` in turn, from `clients` connections for `seconds`
/// each: two variants of one function compared in the same run.
pub async fn load_pair(
    url: &str,
    token: Option<String>,
    paths: [&str; 2],
    body: Bytes,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<(Throughput, Throughput)> {
    let a = load(url, token.clone(), paths[0], body.clone(), clients, seconds).await?;
    let b = load(url, token, paths[1], body, clients, seconds).await?;
    Ok((a, b))
}

/// Runs from `clients` connections for `seconds`: connection `i` sends the bodies
/// `bodies(i)` yields, one after another, until time is up or they run out.
pub async fn run_phase<I>(
    url: &str,
    token: Option<String>,
    path: &str,
    clients: usize,
    seconds: f64,
    bodies: impl Fn(usize) -> I,
) -> anyhow::Result<Phase>
where
    I: Iterator<Item = Bytes> + Send + 'static,
{
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let path: Arc<str> = Arc::from(path);
    let mut tasks = Vec::with_capacity(clients);
    let started = Instant::now();
    for i in 0..clients {
        let mut c = Client::new(url, token.clone())?;
        let path = path.clone();
        let mine = bodies(i);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut errors = 0u64;
            for body in mine {
                if Instant::now() >= deadline {
                    break;
                }
                let t0 = Instant::now();
                match c.raw(Method::POST, &path, Some(body)).await {
                    Ok(r) if r.status == 200 => lat.push(t0.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        samples.extend(lat);
        errors += e;
    }
    Ok(Phase {
        samples,
        errors,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Resident memory of the warm workers of one function, from `/metrics`.
fn worker_rss(metrics: &str, function_id: &str) -> Vec<u64> {
    let needle = format!("function_id=\"{function_id}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("cloister_worker_resident_bytes{") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

async fn bench_workload(
    conn: &Conn,
    token: &Option<String>,
    dir: &Path,
    stem: &str,
    params: &str,
    args: &BenchArgs,
) -> anyhow::Result<WorkloadReport> {
    let file = dir.join(format!("{stem}.js"));
    let code = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read workload {}", file.display()))?;
    let mut c = Client::new(&conn.url, token.clone())?;
    if let Some(id) = crate::identity_cmd::load(conn.identity.as_deref())? {
        c = c.with_identity(id, None);
    }
    let suffix: u32 = rand::rng().random();
    let name = format!("bench-{stem}-{:06x}", suffix & 0xff_ffff);
    let info = c
        .deploy(&DeployRequest::javascript(name.clone(), code))
        .await?;
    let result = async {
        let path = format!("/v1/functions/{name}/invoke");
        let body = cloister_client::invoke_body(params, None);
        let t0 = Instant::now();
        c.invoke(&name, params, None)
            .await
            .context("cold invocation")?;
        let cold_ms = t0.elapsed().as_secs_f64() * 1000.0;
        // Warm-up, then sequential latency from one client.
        for _ in 0..50 {
            c.raw(Method::POST, &path, Some(body.clone())).await?;
        }
        let mut warm = Vec::with_capacity(args.requests);
        for _ in 0..args.requests {
            let t = Instant::now();
            let r = c.raw(Method::POST, &path, Some(body.clone())).await?;
            if r.status != 200 {
                bail!(
                    "warm invocation of {stem} failed: HTTP {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
            }
            warm.push(t.elapsed());
        }
        let throughput = load(
            &conn.url,
            token.clone(),
            &path,
            body,
            args.clients,
            args.seconds,
        )
        .await?;
        let rss = worker_rss(&c.metrics().await?, &info.function_id);
        Ok(WorkloadReport {
            workload: stem.to_owned(),
            cold_ms,
            warm: latency(warm),
            throughput,
            worker_rss_bytes: rss.iter().copied().max(),
            warm_workers: rss.len(),
        })
    }
    .await;
    if let Err(e) = c.delete(&name).await {
        eprintln!("warning: could not delete {name}: {e}");
    }
    result
}

/// Starts the Node.js baseline and measures it with the same load.
async fn node_baseline(dir: &Path, args: &BenchArgs) -> anyhow::Result<Throughput> {
    let tmp =
        std::env::temp_dir().join(format!("cloister-node-baseline-{}.js", std::process::id()));
    std::fs::write(&tmp, include_str!("../bench/node-baseline.js"))?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut child = tokio::process::Command::new("node")
        .arg(&tmp)
        .arg(port.to_string())
        .arg(dir.join("add.js"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start node (is Node.js installed?)")?;
    let url = format!("http://127.0.0.1:{port}");
    let mut probe = Client::new(&url, None)?;
    let ready = Instant::now();
    loop {
        if probe
            .raw(
                Method::POST,
                "/",
                Some(Bytes::from_static(br#"{"params":{"a":2,"b":3}}"#)),
            )
            .await
            .is_ok()
        {
            break;
        }
        if ready.elapsed() > Duration::from_secs(10) {
            bail!("the node baseline did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..200 {
        probe
            .raw(
                Method::POST,
                "/",
                Some(Bytes::from_static(br#"{"params":{"a":2,"b":3}}"#)),
            )
            .await?;
    }
    let body = Bytes::from_static(br#"{"params":{"a":2,"b":3}}"#);
    let t = load(&url, None, "/", body, args.clients, args.seconds).await;
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&tmp);
    t
}

fn print_human(r: &Report) {
    println!("Cloister benchmark — {} (TEE: {}, simulated)", r.url, r.tee);
    println!();
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9} {:>7} {:>10}",
        "workload",
        "cold ms",
        "warm p50",
        "warm p99",
        "inv/s",
        "load p50",
        "load p99",
        "errors",
        "worker RSS"
    );
    for w in &r.workloads {
        let rss = w
            .worker_rss_bytes
            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<16} {:>9.2} {:>9.3} {:>9.3} {:>11.0} {:>9.3} {:>9.3} {:>7} {:>10}",
            w.workload,
            w.cold_ms,
            w.warm.p50_ms,
            w.warm.p99_ms,
            w.throughput.per_second,
            w.throughput.latency.p50_ms,
            w.throughput.latency.p99_ms,
            w.throughput.errors,
            rss
        );
    }
    if let Some(n) = &r.node_baseline {
        println!();
        println!(
            "node baseline (vm.createContext per request, add.js): {:.0} inv/s, p50 {:.3} ms, p99 {:.3} ms, errors {}",
            n.per_second, n.latency.p50_ms, n.latency.p99_ms, n.errors
        );
    }
    if let Some(ratio) = r.add_vs_node_ratio {
        println!("add.js throughput vs node baseline: {ratio:.2}x");
    }
}

/// Runs the benchmark.
pub async fn run(conn: Conn, args: BenchArgs, json: bool) -> anyhow::Result<ExitCode> {
    let token = crate::client_cmds::resolve_token(conn.token.clone())?;
    let mut c = Client::new(&conn.url, token.clone())?;
    c.health()
        .await
        .with_context(|| format!("no Cloister server at {}", conn.url))?;
    if args.deploys > 0 {
        let r = crate::bench_secrets::deploys(&conn, token, &args).await?;
        if json {
            output::json(&r);
        } else {
            println!(
                "deploy ({}): p50 {:.3} ms  p99 {:.3} ms  ({} sequential deploys of add.js)",
                if r.signed {
                    "signed manifest"
                } else {
                    "unsigned"
                },
                r.latency.p50_ms,
                r.latency.p99_ms,
                r.latency.samples
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.sealed {
        let r = crate::bench_sealed::run(&conn, token, &args).await?;
        if json {
            output::json(&r);
        } else {
            crate::bench_sealed::print_human(&r);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.signing {
        let r = crate::bench_signing::run(&conn, token, &args).await?;
        if json {
            output::json(&r);
        } else {
            crate::bench_signing::print_human(&r);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.secrets {
        let r = crate::bench_secrets::run(&conn, token, &args).await?;
        if json {
            output::json(&r);
        } else {
            crate::bench_secrets::print_human(&r);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut workloads = default_workloads();
    if !args.only.is_empty() {
        workloads.retain(|(stem, _)| args.only.iter().any(|o| o == stem));
        if workloads.is_empty() {
            bail!(
                "--only matched no workload; known: add, json-transform, sha256, async, state-leak"
            );
        }
    }
    let mut reports = Vec::new();
    for (stem, params) in &workloads {
        eprintln!(
            "bench: {stem} ({} warm requests, {} clients for {} s)…",
            args.requests, args.clients, args.seconds
        );
        reports.push(bench_workload(&conn, &token, &args.workloads, stem, params, &args).await?);
    }
    let node = if args.node {
        eprintln!(
            "bench: node baseline ({} clients for {} s)…",
            args.clients, args.seconds
        );
        Some(node_baseline(&args.workloads, &args).await?)
    } else {
        None
    };
    let ratio = match (&node, reports.iter().find(|w| w.workload == "add")) {
        (Some(n), Some(a)) if n.per_second > 0.0 => Some(a.throughput.per_second / n.per_second),
        _ => None,
    };
    let report = Report {
        url: conn.url.clone(),
        tee: "sim",
        workloads: reports,
        node_baseline: node,
        add_vs_node_ratio: ratio,
    };
    if json {
        output::json(&report)
    } else {
        print_human(&report)
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let l = latency((1..=100).map(Duration::from_millis).collect());
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(latency(vec![]).samples, 0);
    }

    #[test]
    fn worker_rss_is_read_per_function() {
        let m = "# TYPE x gauge\ncloister_worker_resident_bytes{function_id=\"f1\",version=\"1\",pid=\"9\"} 4096\n\
                 cloister_worker_resident_bytes{function_id=\"f2\",version=\"1\",pid=\"8\"} 1\n";
        assert_eq!(worker_rss(m, "f1"), vec![4096]);
    }
}
