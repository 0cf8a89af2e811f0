//! The TLS client configuration of one function: the web roots built into this binary
//! (webpki-roots, measured with it) plus the extra roots its manifest lists, and nothing from
//! the host's certificate store. One configuration per function keeps its session cache
//! (TLS resumption) its own.

use std::sync::Arc;

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

/// A client configuration trusting the built-in web roots and `extra_pem`.
pub fn client_config(extra_pem: &[String]) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for (index, pem) in extra_pem.iter().enumerate() {
        let root = |reason: String| TlsConfigError::Root { index, reason };
        let cert =
            CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| root(e.to_string()))?;
        roots.add(cert).map_err(|e| root(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
