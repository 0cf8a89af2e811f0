//! TLS 1.3 plumbing: ephemeral certificates, a certificate verifier that defers trust to
//! attestation (but still checks the handshake signature), and accept/connect helpers.

use crate::binding::{EXPORTER_LABEL, EXPORTER_LEN};
use crate::config::ChannelConfig;
use crate::error::ChannelError;
use crate::stream::AttestedStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Server name sent in the handshake (certificates are not what authenticates peers).
pub const SERVER_NAME: &str = "cloister.internal";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> ChannelError {
    ChannelError::Tls(e.to_string())
}

/// A TLS connection the channel can bind to: exporter values and key updates.
pub trait TlsConn: AsyncRead + AsyncWrite + Unpin + Send {
    /// This connection's exporter value for [`EXPORTER_LABEL`].
    fn exporter(&self) -> Result<[u8; EXPORTER_LEN], ChannelError>;
    /// Queues a TLS 1.3 KeyUpdate so both directions move to new traffic keys.
    fn refresh_keys(&mut self) -> Result<(), ChannelError>;
}

/// Client and server streams expose the same rustls calls on different connection types.
macro_rules! tls_conn {
    ($stream:ty) => {
        impl<S: AsyncRead + AsyncWrite + Unpin + Send> TlsConn for $stream {
            fn exporter(&self) -> Result<[u8; EXPORTER_LEN], ChannelError> {
                self.get_ref()
                    .1
                    .export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, None)
                    .map_err(tls_err)
            }

            fn refresh_keys(&mut self) -> Result<(), ChannelError> {
                self.get_mut().1.refresh_traffic_keys().map_err(tls_err)
            }
        }
    };
}

tls_conn!(tokio_rustls::client::TlsStream<S>);
tls_conn!(tokio_rustls::server::TlsStream<S>);

/// Accepts any server certificate but verifies the TLS 1.3 handshake signature with it:
/// the peer must hold the key of the certificate it sent, and attestation (bound to the
/// exporter) decides whether it is trusted.
#[derive(Debug)]
struct AttestationDecides(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AttestationDecides {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "attested channels are TLS 1.3 only".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Accepts attested channels (the listening side).
#[derive(Clone)]
pub struct ChannelAcceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    config: Arc<ChannelConfig>,
}

impl ChannelAcceptor {
    /// An acceptor with a fresh ephemeral certificate.
    pub fn new(config: Arc<ChannelConfig>) -> Result<Self, ChannelError> {
        let certified =
            rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()]).map_err(tls_err)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let tls = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .map_err(tls_err)?;
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            config,
        })
    }

    /// Runs the TLS handshake and the evidence exchange on an accepted connection.
    pub async fn accept<S>(
        &self,
        io: S,
    ) -> Result<AttestedStream<tokio_rustls::server::TlsStream<S>>, ChannelError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let config = self.config.clone();
        tokio::time::timeout(config.handshake_timeout, async {
            let tls = self.acceptor.accept(io).await.map_err(tls_err)?;
            AttestedStream::establish(tls, config.clone()).await
        })
        .await
        .map_err(|_| ChannelError::Timeout("the channel handshake"))?
    }
}

/// Opens attested channels (the connecting side).
#[derive(Clone)]
pub struct ChannelConnector {
    connector: tokio_rustls::TlsConnector,
    config: Arc<ChannelConfig>,
}

impl ChannelConnector {
    /// A connector (TLS 1.3 only).
    pub fn new(config: Arc<ChannelConfig>) -> Result<Self, ChannelError> {
        let provider = provider();
        let verifier = AttestationDecides(provider.signature_verification_algorithms);
        let tls = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            config,
        })
    }

    /// Runs the TLS handshake and the evidence exchange over `io`.
    pub async fn connect<S>(
        &self,
        io: S,
    ) -> Result<AttestedStream<tokio_rustls::client::TlsStream<S>>, ChannelError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let config = self.config.clone();
        let name = ServerName::try_from(SERVER_NAME).map_err(tls_err)?;
        tokio::time::timeout(config.handshake_timeout, async {
            let tls = self.connector.connect(name, io).await.map_err(tls_err)?;
            AttestedStream::establish(tls, config.clone()).await
        })
        .await
        .map_err(|_| ChannelError::Timeout("the channel handshake"))?
    }
}
