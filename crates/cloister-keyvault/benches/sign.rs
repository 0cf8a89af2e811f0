//! Signing throughput of keyvault (docs/PERFORMANCE.md), same run:
//!
//! - `in-process floor`: `KeyMaterial::sign` (Ed25519, aws-lc-rs) alone, one thread;
//! - `vault, 1 caller` / `vault, 32 callers`: `Vault::sign_for_function` in process: the run
//!   authorised, the key looked up, the signature made and its `key.sign` entry committed
//!   (SQLite, synchronous=FULL, group commit);
//! - `channel, 1 client`: the same over keyvault's attested channel (sim TEE, TLS 1.3 over
//!   loopback TCP, a warm connection), one request at a time;
//! - `1 channel, N callers`: N callers multiplexed on one warm channel, as the executor's
//!   signing channel is (at most 128 requests in flight, as in the executor).
//!
//! `cargo bench -p cloister-keyvault --bench sign` (prints signs/s, median and p99 latency);
//! `-- WORD` runs only the measurements whose label contains WORD (e.g. `-- "32 callers"`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_attest::Policy;
use cloister_attest::sim::{SimAttester, SimPlatform, SimVerifier};
use cloister_attest::{TrustStore, VerifierSet};
use cloister_authority::manifest::{Manifest, ManifestLimits};
use cloister_authority::{Identity, SignOptions, sign};
use cloister_channel::{ChannelAcceptor, ChannelConfig, ChannelConnector, Multiplexed};
use cloister_crypto::SecretKey32;
use cloister_crypto::keys::{KeyAlgorithm, KeyMaterial, SignHash};
use cloister_keyvault::{Sealing, Vault};
use cloister_rpc::keyvault::{
    ExecutorMessage, KeyvaultReply, SignRequest, executor_message, keyvault_reply,
};
use cloister_vault_store::SqliteVault;
use prost::Message;
use tokio::net::{TcpListener, TcpStream};

const MEASURE: Duration = Duration::from_secs(3);
/// The executor's bound on signing requests in flight on its signing channel
/// (`cloister_executor::keyvault_client::SIGN_IN_FLIGHT`).
const IN_FLIGHT: usize = 128;

fn report(label: &str, signs: usize, elapsed: Duration, mut lat: Vec<Duration>) {
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{label:<22} {:>9.0} signs/s   p50 {:>7.1} µs   p99 {:>7.1} µs   ({signs} signs)",
        signs as f64 / elapsed.as_secs_f64(),
        q(0.5).as_secs_f64() * 1e6,
        q(0.99).as_secs_f64() * 1e6,
    );
}

/// Awaits the callers started at `start` and reports their latencies together.
async fn gather(label: &str, start: Instant, tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>) {
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    report(label, lat.len(), start.elapsed(), lat);
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run briefly then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let measure = if quick {
        Duration::from_millis(200)
    } else {
        MEASURE
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    rt.block_on(run(measure, &only));
}

async fn run(measure: Duration, only: &[String]) {
    let wanted = |label: &str| only.is_empty() || only.iter().any(|w| label.contains(w.as_str()));
    // The floor: the signature alone.
    let key = KeyMaterial::generate(KeyAlgorithm::Ed25519).expect("key");
    let (mut n, mut lat, start) = (0, Vec::new(), Instant::now());
    while wanted("in-process floor") && start.elapsed() < measure {
        let t = Instant::now();
        std::hint::black_box(
            key.sign(b"transfer 5 to alice", SignHash::Sha256)
                .expect("sign"),
        );
        lat.push(t.elapsed());
        n += 1;
    }
    if wanted("in-process floor") {
        report("in-process floor", n, start.elapsed(), lat);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let admin = Identity::from_seed([9u8; 32], "admin").expect("admin");
    let store = Arc::new(SqliteVault::open(&dir.path().join("kv.db")).expect("store"));
    let sealing = Sealing {
        measurement: [1; 48],
        key: SecretKey32::from_array([7; 32]),
    };
    let (vault, _) = Vault::open(store, &sealing, Some(&admin.public_key()))
        .await
        .expect("vault");
    let vault = Arc::new(vault);
    let executor_m = [2u8; 48];
    let policy_yaml = format!(
        "allow_simulated: true\nallowed_tee_types: [sim]\nallowed_measurements:\n  sim: [\"{}\"]",
        hex::encode(executor_m)
    );
    let shared = vault
        .authority()
        .load_executor_policy(Some(&policy_yaml))
        .await
        .expect("policy");
    let code = "async function handler(p, s, c) { return c.sign('k', p.m); }";
    let manifest = Manifest {
        name: "bench".into(),
        function_id: None,
        previous: None,
        environment: "production".into(),
        runtime: "javascript".into(),
        entrypoint: "handler".into(),
        code_hash: cloister_types::code_hash(code),
        secrets: Vec::new(),
        limits: ManifestLimits {
            timeout_ms: 1000,
            memory_mb: 16,
        },
        activate: true,
        confidential: false,
        env: Default::default(),
        source_name: None,
        keys: vec!["k".into()],
        key_limits: Default::default(),
        egress: None,
    };
    let signed = sign(
        &admin,
        &manifest,
        &SignOptions::for_platform(vault.platform()),
    )
    .expect("sign");
    let m = vault
        .authority()
        .register_manifest(&signed)
        .await
        .expect("register")
        .manifest;
    vault
        .create_key(
            &m.function_id,
            &cloister_types::KeyName::parse("k").expect("name"),
            KeyAlgorithm::Ed25519,
            false,
            "admin",
        )
        .await
        .expect("key");

    // In process, one caller then 32.
    for callers in [1usize, 32] {
        let label = format!("vault, {callers} caller(s)");
        if !wanted(&label) {
            continue;
        }
        let deadline = Instant::now() + measure;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..callers {
            let (vault, m) = (vault.clone(), m.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    vault
                        .sign_for_function(&m, "k", b"transfer 5", SignHash::Sha256, "e", "bench")
                        .await
                        .expect("sign");
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        gather(&label, start, tasks).await;
    }

    // Over the attested channel.
    let platform = Arc::new(SimPlatform::generate().expect("platform"));
    let mut set = VerifierSet::new(&TrustStore::builtin().expect("roots"));
    set.insert(Arc::new(
        SimVerifier::pinning(platform.root().der()).expect("pin"),
    ));
    let set = Arc::new(set);
    let kv_cfg = Arc::new(
        ChannelConfig::new(
            "keyvault",
            Arc::new(SimAttester::new(platform.clone(), "keyvault", [1; 48])),
            set.clone(),
        )
        .accept_peer_shared("executor", shared),
    );
    let keyvault_policy = Policy::from_yaml(&format!(
        "allow_simulated: true\nallowed_tee_types: [sim]\nallowed_measurements:\n  sim: [\"{}\"]",
        hex::encode([1u8; 48])
    ))
    .expect("policy");
    let ex_cfg = Arc::new(
        ChannelConfig::new(
            "executor",
            Arc::new(SimAttester::new(platform.clone(), "executor", executor_m)),
            set,
        )
        .accept_peer("keyvault", keyvault_policy),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = Arc::new(ChannelAcceptor::new(kv_cfg).expect("acceptor"));
    tokio::spawn(cloister_keyvault::release::serve_channel(
        listener,
        acceptor,
        vault.clone(),
        std::future::pending(),
    ));
    let connector = Arc::new(ChannelConnector::new(ex_cfg).expect("connector"));
    let request = ExecutorMessage {
        body: Some(executor_message::Body::Sign(SignRequest {
            function_id: m.function_id.clone(),
            version: m.version,
            code_hash: m.manifest.code_hash.clone(),
            execution_id: "bench".into(),
            key: "k".into(),
            message: b"transfer 5".to_vec(),
            hash: "sha256".into(),
            public_key_only: false,
        })),
    }
    .encode_to_vec();
    // One warm channel: one request at a time, then many callers multiplexed on it (as the
    // executor's signing channel is).
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let mut ch = connector.connect(tcp).await.expect("attest");
    // Warm: the first exchange reads the key into keyvault's memory.
    let _ = ch.call(&request).await.expect("warm");
    let deadline = Instant::now() + measure;
    let start = Instant::now();
    let mut lat = Vec::new();
    while wanted("channel, 1 client") && Instant::now() < deadline {
        let t = Instant::now();
        let reply = ch.call(&request).await.expect("call");
        expect_signed(&reply);
        lat.push(t.elapsed());
    }
    if wanted("channel, 1 client") {
        report("channel, 1 client", lat.len(), start.elapsed(), lat);
    }

    let tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let ch = Multiplexed::spawn(
        connector.connect(tcp).await.expect("attest"),
        IN_FLIGHT,
        Duration::from_secs(30),
    );
    for callers in [8usize, 32, 128] {
        let label = format!("1 channel, {callers} callers");
        if !wanted(&label) {
            continue;
        }
        let deadline = Instant::now() + measure;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..callers {
            let (ch, request) = (ch.clone(), request.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let reply = ch.call(&request).await.expect("call");
                    expect_signed(&reply);
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        gather(&label, start, tasks).await;
    }
}

fn expect_signed(reply: &[u8]) {
    match KeyvaultReply::decode(reply).map(|r| r.body) {
        Ok(Some(keyvault_reply::Body::Signed(_))) => {}
        other => panic!("unexpected reply {other:?}"),
    }
}
