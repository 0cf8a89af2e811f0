//! Channel establishment: a plain rustls TLS 1.3 handshake vs an attested channel (TLS 1.3 +
//! sim evidence both ways + verification + verdicts), both over loopback TCP, same run.
//!
//! `cargo bench -p cloister-channel --bench establish`

use cloister_attest::sim::{SimAttester, SimPlatform, SimVerifier};
use cloister_attest::{Policy, TrustStore, VerifierSet};
use cloister_channel::{ChannelAcceptor, ChannelConfig, ChannelConnector};
use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug)]
struct NoVerify;
impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        // Same work as the channel's verifier: check the handshake signature.
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // Plain TLS 1.3 server.
    let certified =
        rcgen::generate_simple_self_signed(vec!["cloister.internal".to_owned()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let server_tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("cert");
    let client_tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify))
        .with_no_client_auth();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls));
    let plain_addr = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let a = acceptor.clone();
                tokio::spawn(async move {
                    let _ = a.accept(tcp).await;
                });
            }
        });
        addr
    });

    // Attested channel server (keyvault) and client (executor) with the sim TEE.
    let platform = Arc::new(SimPlatform::generate().expect("platform"));
    let mut set = VerifierSet::new(&TrustStore::builtin().expect("roots"));
    set.insert(Arc::new(
        SimVerifier::pinning(platform.root().der()).expect("pin"),
    ));
    let set = Arc::new(set);
    let policy = |m: u8| {
        Policy::from_yaml(&format!(
            "allow_simulated: true\nallowed_tee_types: [sim]\nallowed_measurements:\n  sim: [\"{}\"]",
            hex::encode([m; 48])
        ))
        .expect("policy")
    };
    let kv = Arc::new(
        ChannelConfig::new(
            "keyvault",
            Arc::new(SimAttester::new(platform.clone(), "keyvault", [1; 48])),
            set.clone(),
        )
        .accept_peer("executor", policy(2)),
    );
    let ex = Arc::new(
        ChannelConfig::new(
            "executor",
            Arc::new(SimAttester::new(platform.clone(), "executor", [2; 48])),
            set,
        )
        .accept_peer("keyvault", policy(1)),
    );
    let ch_acceptor = ChannelAcceptor::new(kv).expect("acceptor");
    let ch_connector = ChannelConnector::new(ex).expect("connector");
    let attested_addr = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let a = ch_acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut ch) = a.accept(tcp).await {
                        let _ = ch.recv().await;
                    }
                });
            }
        });
        addr
    });

    let mut g = c.benchmark_group("establish");
    g.bench_function("plain_tls13_handshake", |b| {
        b.to_async(&rt).iter(|| async {
            let tcp = TcpStream::connect(plain_addr).await.expect("tcp");
            let name = rustls::pki_types::ServerName::try_from("cloister.internal").expect("name");
            connector.connect(name, tcp).await.expect("tls")
        })
    });
    g.bench_function("attested_channel_sim", |b| {
        b.to_async(&rt).iter(|| async {
            let tcp = TcpStream::connect(attested_addr).await.expect("tcp");
            ch_connector.connect(tcp).await.expect("channel")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
