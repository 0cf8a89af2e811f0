//! Secret put rate of keyvault in process, per store backend (docs/PERFORMANCE.md), same run:
//! `Vault::put` of a 32-byte value (next version, freshness mark, encryption under the
//! namespace's DEK, audit entry, one durable commit) by N concurrent writers over 4 functions.
//!
//! - `sqlite, N writers`: the embedded store (WAL, synchronous=FULL);
//! - `postgres, N writers`: PostgreSQL at `CLOISTER_TEST_POSTGRES` (default the local test
//!   server), in a private schema.
//!
//! `cargo bench -p cloister-keyvault --bench put` (puts/s, median and p99 latency);
//! `-- WORD` runs only the labels containing WORD.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_authority::manifest::{Manifest, ManifestLimits};
use cloister_authority::{Identity, SignOptions, sign};
use cloister_crypto::SecretKey32;
use cloister_keyvault::{KeyvaultStore, Sealing, Vault};
use cloister_types::{Environment, SecretPath, SecretRef};

const MEASURE: Duration = Duration::from_secs(3);
const FUNCTIONS: usize = 4;

fn admin() -> Identity {
    Identity::from_seed([9u8; 32], "admin").expect("identity")
}

async fn function(v: &Vault, name: &str) -> String {
    let m = Manifest {
        name: name.into(),
        function_id: None,
        previous: None,
        environment: "production".into(),
        runtime: "javascript".into(),
        entrypoint: "handler".into(),
        code_hash: cloister_types::code_hash(name),
        secrets: vec![],
        limits: ManifestLimits {
            timeout_ms: 1000,
            memory_mb: 16,
        },
        activate: true,
        confidential: false,
        env: Default::default(),
        source_name: None,
        keys: vec![],
        key_limits: Default::default(),
        egress: None,
    };
    let signed = sign(&admin(), &m, &SignOptions::for_platform(v.platform())).expect("sign");
    v.authority()
        .register_manifest(&signed)
        .await
        .expect("register")
        .manifest
        .function_id
        .clone()
}

async fn measure(label: &str, store: Arc<dyn KeyvaultStore>, writers: usize, measure: Duration) {
    let sealing = Sealing {
        measurement: [1; 48],
        key: SecretKey32::from_array([7; 32]),
    };
    let (vault, _) = Vault::open(store, &sealing, Some(&admin().public_key()))
        .await
        .expect("vault");
    let vault = Arc::new(vault);
    let mut ids = Vec::new();
    for i in 0..FUNCTIONS {
        ids.push(function(&vault, &format!("bench-{i}")).await);
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let vault = vault.clone();
            let f = ids[w % FUNCTIONS].clone();
            tokio::spawn(async move {
                let name = SecretRef::parse(&format!("K{w}")).expect("name");
                let path =
                    SecretPath::for_function(&f, &Environment::default(), &name).expect("path");
                let mut lat = Vec::new();
                while start.elapsed() < measure {
                    let t = Instant::now();
                    vault
                        .put(&path, &[w as u8; 32], false, "bench")
                        .await
                        .expect("put");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let elapsed = start.elapsed();
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{label:<24} {:>8.0} puts/s   p50 {:>8.1} µs   p99 {:>8.1} µs   ({} puts)",
        lat.len() as f64 / elapsed.as_secs_f64(),
        q(0.5).as_secs_f64() * 1e6,
        q(0.99).as_secs_f64() * 1e6,
        lat.len()
    );
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let window = if quick {
        Duration::from_millis(200)
    } else {
        MEASURE
    };
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |label: &str| only.is_empty() || only.iter().any(|w| label.contains(w.as_str()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for writers in [1, 16] {
            let label = format!("sqlite, {writers} writers");
            if wanted(&label) {
                let dir = tempfile::tempdir().expect("dir");
                let store =
                    cloister_vault_store::SqliteVault::open(&dir.path().join("kv.db")).expect("db");
                measure(&label, Arc::new(store), writers, window).await;
            }
            let label = format!("postgres, {writers} writers");
            if wanted(&label)
                && let Some(db) = cloister_db::testing::TestSchema::new("bench_put")
            {
                let store = cloister_vault_store::PgVault::connect(&db.pg())
                    .await
                    .expect("postgres");
                measure(&label, Arc::new(store), writers, window).await;
            }
        }
    });
}
