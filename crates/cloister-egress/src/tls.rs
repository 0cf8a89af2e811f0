//! The TLS client configurations of one function: the web roots built into this binary
//! (webpki-roots, measured with it) plus, for an origin, the extra roots its manifest names
//! for that origin; nothing from the host's certificate store. Configurations are per
//! function, and so is their session cache (TLS resumption).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cloister_types::egress::{CheckedEgress, Origin};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a function's TLS configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// An extra root is not a certificate rustls accepts as a trust anchor.
    #[error("extra root {index} is not a usable certificate: {reason}")]
    Root {
        /// Its position in the manifest.
        index: usize,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Parses one extra root as rustls would use it (for checks at registration too).
pub fn parse_root(pem: &str) -> Result<CertificateDer<'static>, String> {
    let cert = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())?;
    let mut probe = rustls::RootCertStore::empty();
    probe.add(cert.clone()).map_err(|e| e.to_string())?;
    Ok(cert)
}

/// One function's configurations, by the set of extra roots an origin may be vouched for by
/// (most functions have one: the web roots alone).
pub struct Roots {
    policy: Arc<CheckedEgress>,
    certs: Vec<CertificateDer<'static>>,
    configs: Mutex<HashMap<Vec<usize>, Arc<rustls::ClientConfig>>>,
}

impl Roots {
    /// The roots of `policy`, each parsed now (a root rustls would refuse is an error here,
    /// not at the first request).
    pub fn new(policy: Arc<CheckedEgress>) -> Result<Self, TlsConfigError> {
        let mut certs = Vec::with_capacity(policy.ca.len());
        for (index, (pem, _)) in policy.ca.iter().enumerate() {
            certs.push(parse_root(pem).map_err(|reason| TlsConfigError::Root { index, reason })?);
        }
        let roots = Self {
            policy,
            certs,
            configs: Mutex::default(),
        };
        roots.config(Vec::new())?;
        Ok(roots)
    }

    /// The configuration for connections to `origin`: the web roots plus the extra roots
    /// the manifest names for that origin.
    pub fn config_for(&self, origin: &Origin) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
        let indices: Vec<usize> = self
            .policy
            .ca
            .iter()
            .enumerate()
            .filter(|(_, (_, scope))| scope.iter().any(|p| p.matches(origin)))
            .map(|(i, _)| i)
            .collect();
        self.config(indices)
    }

    fn config(&self, indices: Vec<usize>) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
        let mut configs = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = configs.get(&indices) {
            return Ok(c.clone());
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for &i in &indices {
            if let Some(cert) = self.certs.get(i) {
                roots.add(cert.clone()).map_err(|e| TlsConfigError::Root {
                    index: i,
                    reason: e.to_string(),
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        configs.insert(indices, config.clone());
        Ok(config)
    }
}
