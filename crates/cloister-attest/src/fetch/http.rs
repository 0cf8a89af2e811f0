//! The one HTTP operation collateral fetching needs (`GET`), and its `ureq` implementation.

use std::collections::BTreeMap;

/// A buffered HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: BTreeMap<String, String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A transport that can `GET` a URL; a transport error is a message, HTTP statuses are not errors.
pub trait HttpGet: Send + Sync {
    /// Fetches `url` and buffers the whole response.
    fn get(&self, url: &str) -> Result<HttpResponse, String>;
}

/// Largest response accepted (collateral items are a few KiB; CRLs up to a few hundred KiB).
pub const MAX_BODY: u64 = 8 * 1024 * 1024;

/// HTTPS (rustls with aws-lc-rs, Mozilla's roots) or plain HTTP via `ureq`.
#[cfg(feature = "online")]
pub struct UreqClient {
    agent: ureq::Agent,
}

#[cfg(feature = "online")]
impl UreqClient {
    /// A client with a whole-request timeout.
    pub fn new(timeout: std::time::Duration) -> Self {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::WebPki)
            .unversioned_rustls_crypto_provider(provider)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("cloister-attest/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Self { agent }
    }
}

#[cfg(feature = "online")]
impl HttpGet for UreqClient {
    fn get(&self, url: &str) -> Result<HttpResponse, String> {
        let mut resp = self.agent.get(url).call().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let mut headers = BTreeMap::new();
        for (name, value) in resp.headers() {
            if let Ok(v) = value.to_str() {
                headers.insert(name.as_str().to_ascii_lowercase(), v.to_owned());
            }
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}
