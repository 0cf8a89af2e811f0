//! Attested channels end to end over loopback TCP with the simulated TEE: success, every
//! refusal the issue lists (replay, wrong measurement, tampered signature, no evidence,
//! reflection, unpinned platform), key refresh on the wire, and re-attestation by age.

use cloister_attest::attester::{Attester, Produced};
use cloister_attest::sim::{SimAttester, SimPlatform, SimVerifier};
use cloister_attest::{AttestError, Policy, TeeType, TrustStore, VerifierSet};
use cloister_channel::frame::{Msg, read_msg, write_msg};
use cloister_channel::{ChannelAcceptor, ChannelConfig, ChannelConnector, ChannelError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KV: [u8; 48] = [0x4b; 48];
const EX: [u8; 48] = [0x45; 48];

fn verifiers(p: &SimPlatform) -> Arc<VerifierSet> {
    let mut set = VerifierSet::new(&TrustStore::builtin().expect("roots"));
    set.insert(Arc::new(SimVerifier::pinning(p.root().der()).expect("pin")));
    Arc::new(set)
}

fn policy(m: &[u8; 48]) -> Policy {
    Policy::from_yaml(&format!(
        "allow_simulated: true\nallowed_tee_types: [sim]\nallowed_measurements:\n  sim: [\"{}\"]\nmax_age_seconds: 60",
        hex::encode(m)
    ))
    .expect("policy")
}

fn config(
    p: &Arc<SimPlatform>,
    role: &str,
    m: [u8; 48],
    attester: Option<Arc<dyn Attester>>,
) -> ChannelConfig {
    let attester = attester.unwrap_or_else(|| Arc::new(SimAttester::new(p.clone(), role, m)));
    let mut c = ChannelConfig::new(role, attester, verifiers(p));
    c.handshake_timeout = Duration::from_secs(3);
    if role == "keyvault" {
        c.accept_peer("executor", policy(&EX))
    } else {
        c.accept_peer("keyvault", policy(&KV))
    }
}

/// Runs a keyvault echo server; returns its address and a handle yielding the server-side
/// result of the first connection.
async fn echo_server(
    cfg: ChannelConfig,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<u64, ChannelError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = ChannelAcceptor::new(Arc::new(cfg)).expect("acceptor");
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ch = acceptor.accept(tcp).await?;
        loop {
            match ch.recv().await {
                Ok(data) => ch.send(&data).await?,
                Err(ChannelError::Closed) => return Ok(ch.peer_attestations()),
                Err(e) => return Err(e),
            }
        }
    });
    (addr, handle)
}

async fn connect(
    cfg: ChannelConfig,
    addr: std::net::SocketAddr,
) -> Result<
    cloister_channel::AttestedStream<tokio_rustls::client::TlsStream<TcpStream>>,
    ChannelError,
> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    ChannelConnector::new(Arc::new(cfg))
        .expect("connector")
        .connect(tcp)
        .await
}

#[tokio::test]
async fn mutual_attestation_succeeds_and_carries_data() {
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    let (addr, server) = echo_server(config(&p, "keyvault", KV, None)).await;
    let mut ch = connect(config(&p, "executor", EX, None), addr)
        .await
        .expect("channel");
    assert_eq!(ch.peer().role, "keyvault");
    let claims = ch.peer().verified.claims();
    assert_eq!(claims.tee, TeeType::Sim);
    assert_eq!(claims.tee.label(), "sim (no hardware protection)");
    assert_eq!(claims.measurement.0, KV.to_vec());
    assert_eq!(ch.call(b"ping").await.expect("call"), b"ping");
    drop(ch);
    assert_eq!(server.await.expect("join").expect("server"), 1);
}

#[tokio::test]
async fn wrong_measurement_is_refused_by_the_keyvault() {
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    let (addr, server) = echo_server(config(&p, "keyvault", KV, None)).await;
    let rogue = [0x66; 48];
    let err = connect(config(&p, "executor", rogue, None), addr)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), "policy_rejected", "{err}");
    let server_err = server.await.expect("join").expect_err("server refuses");
    assert_eq!(server_err.code(), "policy_rejected");
    assert!(
        server_err.to_string().contains("allowed_measurements"),
        "{server_err}"
    );
}

/// Produces real evidence, then corrupts it.
struct Tamper(SimAttester, usize);

impl Attester for Tamper {
    fn tee(&self) -> TeeType {
        TeeType::Sim
    }
    fn attest(&self, rd: &[u8; 64]) -> Result<Produced, AttestError> {
        let mut p = self.0.attest(rd)?;
        let i = p.evidence.len() - self.1;
        p.evidence[i] ^= 0x01;
        Ok(p)
    }
}

#[tokio::test]
async fn tampered_signature_is_refused() {
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    let (addr, server) = echo_server(config(&p, "keyvault", KV, None)).await;
    // The last bytes of a COSE_Sign1 are the signature.
    let bad = Arc::new(Tamper(SimAttester::new(p.clone(), "executor", EX), 5));
    let err = connect(config(&p, "executor", EX, Some(bad)), addr)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), "bad_signature", "{err}");
    assert_eq!(
        server.await.expect("join").expect_err("server").code(),
        "bad_signature"
    );
}

/// Returns the first evidence it ever produced, whatever it is asked to bind.
struct Replay(SimAttester, Mutex<Option<Produced>>);

impl Attester for Replay {
    fn tee(&self) -> TeeType {
        TeeType::Sim
    }
    fn attest(&self, rd: &[u8; 64]) -> Result<Produced, AttestError> {
        let mut saved = self.1.lock().expect("lock");
        if saved.is_none() {
            *saved = Some(self.0.attest(rd)?);
        }
        Ok(saved.clone().expect("saved"))
    }
}

#[tokio::test]
async fn evidence_replayed_from_another_connection_is_refused() {
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    let replay: Arc<dyn Attester> = Arc::new(Replay(
        SimAttester::new(p.clone(), "executor", EX),
        Mutex::new(None),
    ));
    let (addr, server) = echo_server(config(&p, "keyvault", KV, None)).await;
    let mut first = connect(config(&p, "executor", EX, Some(replay.clone())), addr)
        .await
        .expect("first");
    assert_eq!(first.call(b"x").await.expect("call"), b"x");
    drop(first);
    server.await.expect("join").expect("first server");
    let (addr, server) = echo_server(config(&p, "keyvault", KV, None)).await;
    let err = connect(config(&p, "executor", EX, Some(replay)), addr)
        .await
        .expect_err("replay");
    assert_eq!(err.code(), "wrong_binding", "{err}");
    assert_eq!(
        server.await.expect("join").expect_err("server").code(),
        "wrong_binding"
    );
}

#[tokio::test]
async fn evidence_from_an_unpinned_platform_is_refused() {
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    let stranger = Arc::new(SimPlatform::generate().expect("platform"));
    let (addr, server) = echo_server(config(&p, "keyvault", KV, None)).await;
    let other: Arc<dyn Attester> = Arc::new(SimAttester::new(stranger, "executor", EX));
    let err = connect(config(&p, "executor", EX, Some(other)), addr)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), "untrusted_chain", "{err}");
    assert!(server.await.expect("join").is_err());
}

/// A TLS peer that completes the handshake and then sends data (or nothing) instead of evidence.
async fn raw_tls_client(addr: std::net::SocketAddr, send_data_first: bool) -> Option<Msg> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls13")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(NoVerify))
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(
            rustls::pki_types::ServerName::try_from("cloister.internal").expect("name"),
            tcp,
        )
        .await
        .expect("tls");
    if send_data_first {
        write_msg(&mut s, &Msg::Data(b"give me secrets".to_vec()))
            .await
            .expect("write");
    }
    // Skip the server's own evidence; return what follows (its verdict), if anything.
    let _server_attest = read_msg(&mut s).await.ok()?;
    read_msg(&mut s).await.ok()
}

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
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn a_peer_without_evidence_is_refused() {
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    let mut cfg = config(&p, "keyvault", KV, None);
    cfg.handshake_timeout = Duration::from_millis(500);
    let (addr, server) = echo_server(cfg.clone()).await;
    let verdict = raw_tls_client(addr, true).await;
    assert!(
        matches!(&verdict, Some(Msg::Error { code, .. }) if code == "attestation_missing"),
        "{verdict:?}"
    );
    assert_eq!(
        server.await.expect("join").expect_err("server").code(),
        "attestation_missing"
    );

    // Silent peer: the handshake times out.
    let (addr, server) = echo_server(cfg).await;
    let silent = tokio::spawn(raw_tls_client(addr, false));
    assert_eq!(
        server.await.expect("join").expect_err("server").code(),
        "channel_timeout"
    );
    silent.abort();
}

#[tokio::test]
async fn reflected_evidence_is_refused_by_the_client() {
    // A rogue "keyvault" echoes the executor's own evidence back, claiming the keyvault role.
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let certified =
        rcgen::generate_simple_self_signed(vec!["cloister.internal".to_owned()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls13")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("cert");
    let rogue = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut s = tokio_rustls::TlsAcceptor::from(Arc::new(tls))
            .accept(tcp)
            .await
            .expect("tls");
        if let Ok(Msg::Attest { evidence, .. }) = read_msg(&mut s).await {
            let _ = write_msg(
                &mut s,
                &Msg::Attest {
                    role: "keyvault".into(),
                    evidence,
                },
            )
            .await;
            let _ = write_msg(&mut s, &Msg::Accepted).await;
        }
        read_msg(&mut s).await.ok()
    });
    let mut cfg = config(&p, "executor", EX, None);
    // Even a client that would accept the executor measurement from a "keyvault" refuses.
    cfg = cfg.accept_peer("keyvault", policy(&EX));
    let err = connect(cfg, addr).await.expect_err("reflection");
    assert_eq!(err.code(), "wrong_binding", "{err}");
    let told = rogue.await.expect("join");
    assert!(matches!(told, Some(Msg::Error { code, .. }) if code == "wrong_binding"));
}

/// Forwards bytes both ways, counting client→server TLS records of `len` payload bytes.
async fn counting_proxy(
    upstream: std::net::SocketAddr,
    len: u16,
) -> (std::net::SocketAddr, Arc<Mutex<u64>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(Mutex::new(0u64));
    let c = count.clone();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.expect("accept");
        let server = TcpStream::connect(upstream).await.expect("upstream");
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
        });
        loop {
            let mut header = [0u8; 5];
            if cr.read_exact(&mut header).await.is_err() {
                break;
            }
            let n = u16::from_be_bytes([header[3], header[4]]);
            let mut body = vec![0u8; usize::from(n)];
            if cr.read_exact(&mut body).await.is_err() {
                break;
            }
            if header[0] == 23 && n == len {
                *c.lock().expect("lock") += 1;
            }
            if sw.write_all(&header).await.is_err() || sw.write_all(&body).await.is_err() {
                break;
            }
        }
    });
    (addr, count)
}

#[tokio::test]
async fn traffic_keys_are_refreshed_on_the_interval() {
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    let (addr, server) = echo_server(config(&p, "keyvault", KV, None)).await;
    // An encrypted TLS 1.3 KeyUpdate is a 22-byte record: 5-byte message, content type, tag.
    let (proxy, key_update_records) = counting_proxy(addr, 22).await;
    let mut cfg = config(&p, "executor", EX, None);
    cfg.key_rotation_interval = Duration::from_millis(50);
    let mut ch = connect(cfg, proxy).await.expect("channel");
    let payload = vec![0x5a; 100];
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            ch.call(&payload).await.expect("call after key update"),
            payload
        );
    }
    assert_eq!(ch.key_updates(), 6);
    assert_eq!(
        *key_update_records.lock().expect("lock"),
        6,
        "KeyUpdate records on the wire"
    );
    drop(ch);
    server.await.expect("join").expect("server");
}

#[tokio::test]
async fn long_lived_connections_re_attest_and_stale_peers_are_cut_off() {
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    let mut kv = config(&p, "keyvault", KV, None);
    kv.max_attestation_age = Duration::from_millis(400);
    let (addr, server) = echo_server(kv.clone()).await;
    let mut ex = config(&p, "executor", EX, None);
    ex.max_attestation_age = Duration::from_millis(400);
    let mut ch = connect(ex, addr).await.expect("channel");
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        ch.call(b"tick").await.expect("call");
    }
    assert!(
        ch.peer_attestations() >= 3,
        "client verified the keyvault {} times",
        ch.peer_attestations()
    );
    drop(ch);
    let server_count = server.await.expect("join").expect("server");
    assert!(
        server_count >= 3,
        "keyvault verified the executor {server_count} times"
    );

    // An executor that never re-attests within the keyvault's maximum age is cut off.
    let (addr, server) = echo_server(kv).await;
    let mut lazy = config(&p, "executor", EX, None);
    lazy.max_attestation_age = Duration::from_secs(3600);
    let mut ch = connect(lazy, addr).await.expect("channel");
    ch.call(b"early").await.expect("fresh");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let err = ch.call(b"late").await.expect_err("stale");
    assert_eq!(err.code(), "attestation_stale", "{err}");
    assert_eq!(
        server.await.expect("join").expect_err("server").code(),
        "attestation_stale"
    );
}

/// An executor's multiplexed channel to `addr` (16 exchanges in flight).
async fn multiplexed(
    p: &Arc<SimPlatform>,
    addr: std::net::SocketAddr,
    reply_timeout: Duration,
) -> cloister_channel::Multiplexed {
    cloister_channel::Multiplexed::spawn(
        connect(config(p, "executor", EX, None), addr)
            .await
            .expect("channel"),
        16,
        reply_timeout,
    )
}

/// A keyvault that reads `batch` tagged requests, then answers them in reverse order, each
/// with its payload prefixed by "re:" (an id of its choosing instead when `wrong_id` is set).
async fn reversing_server(
    cfg: ChannelConfig,
    batch: usize,
    wrong_id: Option<u64>,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = ChannelAcceptor::new(Arc::new(cfg)).expect("acceptor");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ch = acceptor.accept(tcp).await.expect("attest");
        loop {
            let mut got = Vec::new();
            while got.len() < batch {
                match ch.recv_any().await {
                    Ok(cloister_channel::Incoming { id: Some(id), data }) => got.push((id, data)),
                    _ => return,
                }
            }
            for (id, data) in got.into_iter().rev() {
                let reply = [b"re:".as_slice(), &data].concat();
                if ch
                    .send_tagged(wrong_id.unwrap_or(id), &reply)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    addr
}

#[tokio::test]
async fn a_multiplexed_channel_matches_replies_that_come_out_of_order() {
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    let addr = reversing_server(config(&p, "keyvault", KV, None), 3, None).await;
    let ch = multiplexed(&p, addr, Duration::from_secs(5)).await;
    assert_eq!(ch.peer().role, "keyvault");
    // Three in flight at once; the server answers the last first.
    let calls = ["a", "b", "c"].map(|m| {
        let ch = ch.clone();
        tokio::spawn(async move { ch.call(m.as_bytes()).await.expect("call") })
    });
    for (m, call) in ["a", "b", "c"].iter().zip(calls) {
        assert_eq!(call.await.expect("join"), format!("re:{m}").into_bytes());
    }
    // A caller that gives up leaves the others, and the channel, unharmed.
    let abandoned = tokio::time::timeout(Duration::from_millis(50), ch.call(b"gone")).await;
    assert!(abandoned.is_err(), "the server waits for three requests");
    let (x, y) = tokio::join!(ch.call(b"x"), ch.call(b"y"));
    assert_eq!(x.expect("x"), b"re:x");
    assert_eq!(y.expect("y"), b"re:y");
    assert!(!ch.is_closed());
}

#[tokio::test]
async fn a_reply_to_an_exchange_not_in_flight_closes_a_multiplexed_channel() {
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    let addr = reversing_server(config(&p, "keyvault", KV, None), 2, Some(999)).await;
    let ch = multiplexed(&p, addr, Duration::from_secs(5)).await;
    let (a, b) = tokio::join!(ch.call(b"a"), ch.call(b"b"));
    for r in [a, b] {
        assert_eq!(r.expect_err("refused").code(), "channel_protocol");
    }
    assert!(ch.is_closed());
    assert!(
        ch.call(b"later").await.is_err(),
        "a failed channel stays failed"
    );
}

#[tokio::test]
async fn an_unanswered_exchange_or_its_owners_close_fails_a_multiplexed_channel() {
    let p = Arc::new(SimPlatform::generate().expect("platform"));
    // The server waits for 3 requests before it answers: 1 is never answered.
    let addr = reversing_server(config(&p, "keyvault", KV, None), 3, None).await;
    let ch = multiplexed(&p, addr, Duration::from_millis(300)).await;
    let e = ch.call(b"lonely").await.expect_err("never answered");
    assert_eq!(e.code(), "channel_protocol", "{e}");
    assert!(e.to_string().contains("reply"), "{e}");
    assert!(ch.is_closed());
    // A request that was never sent is `Closed` (safe to retry elsewhere).
    assert_eq!(
        ch.call(b"later").await.expect_err("closed").code(),
        "channel_closed"
    );

    // The owner closing the channel fails what waits on it at once.
    let addr = reversing_server(config(&p, "keyvault", KV, None), 3, None).await;
    let ch = multiplexed(&p, addr, Duration::from_secs(30)).await;
    let waiting = {
        let ch = ch.clone();
        tokio::spawn(async move { ch.call(b"pending").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    ch.close();
    let e = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("failed at once")
        .expect("join")
        .expect_err("closed");
    assert!(e.to_string().contains("closed by its owner"), "{e}");
}
