//! What the executor's outbound path costs over a plain rustls + hyper client, same server,
//! same run: a request on a pooled connection, and a request on a fresh connection (TCP, full
//! TLS handshake, request).
//!
//! `cargo bench -p cloister-egress --bench fetch`

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cloister_egress::testing::{Leaf, TestCa, TestServer};
use cloister_egress::{EgressLimits, FunctionEgress};
use cloister_types::egress::{CheckedEgress, Egress, FetchRequest, Redirect};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// A plain client connection: TCP, rustls with the same roots, hyper HTTP/1.1.
async fn plain_connection(
    config: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("tls");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

async fn plain_get(send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, port: u16) {
    let req = hyper::Request::get("/json")
        .header("host", format!("127.0.0.1:{port}"))
        .body(Empty::new())
        .expect("request");
    send.ready().await.expect("ready");
    let resp = send.send_request(req).await.expect("send");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body.len(), 18);
}

fn plain_config(ca: &TestCa) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("pem"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

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
    let config = plain_config(&ca);
    let mut send = rt.block_on(plain_connection(config.clone(), srv.addr));
    g.bench_function("plain rustls+hyper", |b| {
        b.iter(|| rt.block_on(plain_get(&mut send, port)))
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
            let mut send = plain_connection(plain_config(&ca), srv.addr).await;
            plain_get(&mut send, port).await;
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
