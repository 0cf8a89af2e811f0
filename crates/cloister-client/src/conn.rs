//! One keep-alive HTTP/1.1 connection to the server, re-established on demand.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{ClientError, RawResponse};

/// Where the server is.
#[derive(Debug, Clone)]
pub struct Endpoint {
    url: String,
    host: String,
    authority: String,
}

impl Endpoint {
    /// Parses `http://host[:port]` (a trailing `/` is fine; TLS arrives with attested channels).
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = |m: &str| ClientError::Url(url.to_owned(), m.to_owned());
        let uri: Uri = url
            .trim_end_matches('/')
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// URLs are supported"));
        }
        let host = uri.host().ok_or_else(|| bad("missing host"))?.to_owned();
        let port = uri.port_u16().unwrap_or(80);
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(bad("the URL must not have a path"));
        }
        let host_only = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            authority: format!("{host}:{port}"),
            host: host_only,
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn port(&self) -> u16 {
        self.authority
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(80)
    }
}

/// A lazily opened connection.
pub(crate) struct Connection {
    endpoint: Endpoint,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            sender: None,
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn transport(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            url: self.endpoint.url.clone(),
            message: e.to_string(),
        }
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let stream = TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port()))
            .await
            .map_err(|e| self.transport(e))?;
        stream.set_nodelay(true).map_err(|e| self.transport(e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.transport(e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
        extra: &[(&str, &str)],
    ) -> Result<RawResponse, ClientError> {
        // A kept-alive connection may have been closed by the server meanwhile: retry once on
        // a fresh connection, but only if the request can be safely repeated or never left.
        for attempt in 0..2 {
            let mut sender = match self.sender.take() {
                Some(s) if !s.is_closed() => s,
                _ => self.connect().await?,
            };
            if sender.ready().await.is_err() {
                if attempt == 0 {
                    continue;
                }
                return Err(self.transport("connection closed"));
            }
            let mut req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(header::HOST, &self.endpoint.authority);
            if let Some(t) = token {
                req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            if body.is_some() {
                req = req.header(header::CONTENT_TYPE, "application/json");
            }
            for (k, v) in extra {
                req = req.header(*k, *v);
            }
            let req = req
                .body(Full::new(body.clone().unwrap_or_default()))
                .map_err(|e| ClientError::Url(path.to_owned(), e.to_string()))?;
            match sender.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let (parts, body) = resp.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map_err(|e| self.transport(e))?
                        .to_bytes();
                    self.sender = Some(sender);
                    return Ok(RawResponse {
                        status,
                        body,
                        headers: parts.headers,
                    });
                }
                Err(e) if attempt == 0 && e.is_canceled() => continue,
                Err(e) => return Err(self.transport(e)),
            }
        }
        Err(self.transport("connection closed"))
    }
}
