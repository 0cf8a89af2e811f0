//! What the executor's outbound path costs over a plain rustls + hyper client, same server,
//! same run: a request on a pooled connection, and a request on a fresh connection (TCP, full
//! TLS handshake, request).
//!
//! `cargo bench -p cloister-egress --bench fetch`

use std::sync::Arc;
use std::time::Duration;

use cloister_egress::testing::{Leaf, PlainClient, TestCa, TestServer};
use cloister_egress::{EgressLimits, FunctionEgress};
use cloister_types::egress::{CheckedEgress, Egress, FetchRequest, Redirect};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ca = TestCa::new();
    let srv = rt.block_on(TestServer::https(ca.server_config(&Leaf::default())));
    let port = srv.port();
    let origin = format!("https://127.0.0.1:{port}");
    let policy: Arc<CheckedEgress> = Arc::new(
        Egress {
            allow: vec![origin.clone()],
            ca: vec![cloister_types::egress::ExtraRoot {
                pem: ca.pem().to_owned(),
                origins: vec![origin.clone()],
            }],
            secrets: Default::default(),
        }
        .check(&[])
        .expect("policy"),
    );
    let get = FetchRequest {
        url: format!("{origin}/json"),
        method: "GET".into(),
        headers: vec![],
        body: String::new(),
        redirect: Redirect::Follow,
    };
    let limits = EgressLimits {
        max_requests: u32::MAX,
        max_sent: usize::MAX,
        max_received: usize::MAX,
        ..EgressLimits::default()
    };
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(3600);

    let mut g = c.benchmark_group("pooled");
    let pooled = Arc::new(FunctionEgress::new(policy.clone(), limits).expect("client"));
    let session = pooled
        .session(Default::default(), deadline())
        .expect("session");
    g.bench_function("egress", |b| {
        b.to_async(&rt).iter(|| async {
            let r = session.fetch(get.clone()).await.expect("fetch");
            assert_eq!(r.status, 200);
        })
    });
    let mut plain = rt.block_on(PlainClient::connect(&ca, srv.addr));
    g.bench_function("plain rustls+hyper", |b| {
        b.iter(|| assert_eq!(rt.block_on(plain.get("/json")), 18))
    });
    g.finish();

    // Fresh connections: a new client (no pool, no TLS session to resume) each time.
    let mut g = c.benchmark_group("fresh");
    g.bench_function("egress", |b| {
        b.to_async(&rt).iter(|| async {
            let f = Arc::new(FunctionEgress::new(policy.clone(), limits).expect("client"));
            let s = f.session(Default::default(), deadline()).expect("session");
            let r = s.fetch(get.clone()).await.expect("fetch");
            assert_eq!(r.status, 200);
        })
    });
    g.bench_function("plain rustls+hyper", |b| {
        b.to_async(&rt).iter(|| async {
            let mut plain = PlainClient::connect(&ca, srv.addr).await;
            assert_eq!(plain.get("/json").await, 18);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
