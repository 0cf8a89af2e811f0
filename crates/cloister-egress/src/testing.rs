//! A local HTTPS (and HTTP) server for tests and benchmarks of outbound requests: its own
//! test CA (rcgen), certificates for chosen names, expired or not, and routes that echo,
//! redirect, send large or slow bodies, and reflect a header back in the forms a careless
//! API would. Feature `test-server`; never part of a production build.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test certificate authority.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

/// How a server's certificate is made.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// DNS names and IP addresses it is valid for.
    pub names: Vec<String>,
    /// Already expired.
    pub expired: bool,
}

impl Default for Leaf {
    fn default() -> Self {
        Self {
            names: vec!["localhost".into(), "127.0.0.1".into()],
            expired: false,
        }
    }
}

impl TestCa {
    /// A fresh CA.
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cloister egress test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).expect("self-signed");
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM (what a manifest's `egress.ca` lists).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server configuration with a leaf certificate made as `leaf` says.
    pub fn server_config(&self, leaf: &Leaf) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(leaf.names.clone()).expect("params");
        if leaf.expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// One request a server saw: method, path, headers (lower-case names).
pub type SeenRequest = (String, String, Vec<(String, String)>);

/// What a server saw, for assertions.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Every request, in order of arrival.
    pub requests: Vec<SeenRequest>,
    /// Connections accepted.
    pub connections: usize,
}

/// A running test server on 127.0.0.1.
pub struct TestServer {
    /// Its address.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The routes:
/// - `/echo`: JSON `{method, path, headers, body}` of the request;
/// - `/json`: `{"ok":true,"n":42}`;
/// - `/status?code=N`: an empty answer with that status;
/// - `/redirect?to=URL&code=N`: a redirect (302 by default) to URL;
/// - `/big?bytes=N`: N bytes of `x`;
/// - `/slow`: headers at once, then one byte every 200 ms for a minute;
/// - `/reflect?header=NAME`: that request header back in the body (as is, in JSON, base64
///   and percent-encoded) and as the response header `x-reflected`.
async fn route(
    req: Request<Incoming>,
    seen: Arc<Mutex<Seen>>,
) -> Result<Response<Body>, Infallible> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    seen.lock()
        .expect("seen")
        .requests
        .push((method.clone(), path.clone(), headers.clone()));
    let q = query(&req);
    let response = match path.as_str() {
        "/echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let v = serde_json::json!({
                "method": method,
                "path": path,
                "headers": headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
                "body": String::from_utf8_lossy(&body),
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(full(v.to_string()))
        }
        "/json" => Response::builder()
            .header("content-type", "application/json")
            .body(full(r#"{"ok":true,"n":42}"#)),
        "/status" => Response::builder()
            .status(
                q.get("code")
                    .and_then(|c| c.parse::<u16>().ok())
                    .unwrap_or(200),
            )
            .body(full("")),
        "/redirect" => Response::builder()
            .status(
                q.get("code")
                    .and_then(|c| c.parse::<u16>().ok())
                    .unwrap_or(302),
            )
            .header("location", q.get("to").cloned().unwrap_or_default())
            .body(full("")),
        "/big" => {
            let n = q
                .get("bytes")
                .and_then(|b| b.parse::<usize>().ok())
                .unwrap_or(0);
            Response::builder().body(full(vec![b'x'; n]))
        }
        "/slow" => {
            let stream = futures_stream();
            Response::builder().body(StreamBody::new(stream).boxed())
        }
        "/reflect" => {
            let name = q
                .get("header")
                .cloned()
                .unwrap_or_else(|| "authorization".into());
            let v = headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let b64 = base64::engine::general_purpose::STANDARD.encode(&v);
            let pct: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            let body = serde_json::json!({
                "raw": v,
                "b64": b64,
                "pct": pct,
                "text": format!("you sent {v} to us"),
            });
            Response::builder()
                .header("x-reflected", v.as_str())
                .body(full(body.to_string()))
        }
        _ => Response::builder().status(404).body(full("not found")),
    };
    Ok(response.unwrap_or_else(|_| Response::new(full("bad response"))))
}

/// One byte every 200 ms, for a minute.
fn futures_stream() -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tokio::spawn(async move {
        for _ in 0..300 {
            if tx
                .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    ReceiverStream(rx)
}

struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

impl TestServer {
    /// An HTTPS server with `config`, on a free port of 127.0.0.1.
    pub async fn https(config: Arc<rustls::ServerConfig>) -> Self {
        Self::start(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    /// A plain HTTP server on a free port of 127.0.0.1.
    pub async fn http() -> Self {
        Self::start(None).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                s.lock().expect("seen").connections += 1;
                let (tls, seen) = (tls.clone(), s.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |r| route(r, seen.clone()));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        Self { addr, seen, task }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What the server saw so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().expect("seen").clone()
    }
}

/// A plain client to compare the executor's path with: rustls (web roots and `ca`) and
/// hyper's HTTP/1.1 over one kept-alive connection, nothing else.
pub struct PlainClient {
    send: hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
    host: String,
}

impl PlainClient {
    /// A fresh connection (TCP, full TLS handshake) to `addr`, trusting `ca`.
    pub async fn connect(ca: &TestCa, addr: SocketAddr) -> Self {
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        roots
            .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("pem"))
            .expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("tls");
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Self {
            send,
            host: addr.to_string(),
        }
    }

    /// GET `path`, the whole body read; its length.
    pub async fn get(&mut self, path: &str) -> usize {
        let req = Request::get(path)
            .header("host", self.host.as_str())
            .body(http_body_util::Empty::new())
            .expect("request");
        self.send.ready().await.expect("ready");
        let resp = self.send.send_request(req).await.expect("send");
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .len()
    }
}
