//! Connections for one function: the name is resolved here, every address is checked
//! against the policy (public, or named by the allowlist), the TCP connection goes to an
//! address that passed (so a second, different answer from DNS cannot be slipped in), and
//! TLS is verified by this process's rustls before any byte of the request is written.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cloister_types::egress::{CheckedEgress, Host, Origin, Scheme};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Most resolved addresses tried for one connection.
const MAX_ADDRESSES: usize = 4;

/// Why a connection could not be made (carried through hyper's error to the fetch).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Every resolved address is one the policy refuses.
    #[error("{host} resolves to {address}, which is not public")]
    AddressRefused {
        /// The host name.
        host: String,
        /// The first refused address.
        address: IpAddr,
    },
    /// The name did not resolve.
    #[error("{host} does not resolve: {reason}")]
    Resolve {
        /// The host name.
        host: String,
        /// Why.
        reason: String,
    },
    /// No address accepted a connection.
    #[error("cannot connect to {host}: {reason}")]
    Connect {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// TLS failed.
    #[error("{0}")]
    Tls(String),
    /// The URI hyper passed has no host or an unknown scheme.
    #[error("malformed URI")]
    Uri,
}

/// A connection: plain TCP (only where the allowlist says `http://`) or TLS.
#[allow(clippy::large_enum_variant)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(tokio_rustls::client::TlsStream<TcpStream>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Makes the connections of one function (a `tower` service over URIs, for hyper's pool).
#[derive(Clone)]
pub struct Connector {
    policy: Arc<CheckedEgress>,
    roots: Arc<crate::tls::Roots>,
    connect_timeout: Duration,
}

impl Connector {
    /// A connector enforcing `policy`, verifying TLS with `roots`.
    pub fn new(
        policy: Arc<CheckedEgress>,
        roots: Arc<crate::tls::Roots>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            policy,
            roots,
            connect_timeout,
        }
    }

    async fn connect(self, uri: http::Uri) -> Result<TokioIo<Stream>, ConnectError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(ConnectError::Uri),
        };
        let host = uri.host().ok_or(ConnectError::Uri)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let scheme = if https { Scheme::Https } else { Scheme::Http };
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                tokio::time::timeout(self.connect_timeout, tokio::net::lookup_host((bare, port)))
                    .await
                    .map_err(|_| ConnectError::Resolve {
                        host: bare.to_owned(),
                        reason: "timed out".into(),
                    })?
                    .map_err(|e| ConnectError::Resolve {
                        host: bare.to_owned(),
                        reason: e.to_string(),
                    })?
                    .collect()
            }
        };
        let Some(first) = addrs.first() else {
            return Err(ConnectError::Resolve {
                host: bare.to_owned(),
                reason: "no address".into(),
            });
        };
        let allowed: Vec<SocketAddr> = addrs
            .iter()
            .filter(|a| self.policy.address_allowed(a.ip(), scheme, port))
            .take(MAX_ADDRESSES)
            .copied()
            .collect();
        if allowed.is_empty() {
            return Err(ConnectError::AddressRefused {
                host: bare.to_owned(),
                address: first.ip(),
            });
        }
        let mut last = String::from("no address");
        let mut tcp = None;
        for a in allowed {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(a)).await {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(e)) => last = format!("{a}: {e}"),
                Err(_) => last = format!("{a}: timed out"),
            }
        }
        let tcp = tcp.ok_or_else(|| ConnectError::Connect {
            host: bare.to_owned(),
            reason: last,
        })?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return Ok(TokioIo::new(Stream::Plain(tcp)));
        }
        let name = rustls::pki_types::ServerName::try_from(bare.to_owned())
            .map_err(|_| ConnectError::Tls(format!("{bare} is not a valid TLS server name")))?;
        let origin = Origin {
            scheme,
            host: match bare.parse::<IpAddr>() {
                Ok(ip) => Host::Address(cloister_types::egress::canonical(ip)),
                Err(_) => Host::Name(bare.trim_end_matches('.').to_ascii_lowercase()),
            },
            port,
        };
        let config = self
            .roots
            .config_for(&origin)
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = tokio::time::timeout(self.connect_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| ConnectError::Tls("the handshake timed out".into()))?
            .map_err(|e| ConnectError::Tls(tls_reason(&e)))?;
        Ok(TokioIo::new(Stream::Tls(tls)))
    }
}

/// rustls's own error when the I/O error carries one (certificate expired, unknown issuer,
/// name mismatch), else the I/O error.
fn tls_reason(e: &io::Error) -> String {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|r| r.to_string())
        .unwrap_or_else(|| e.to_string())
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}
