//! The gateway's client of keyvault's internal RPC. Everything it forwards is metadata or
//! HPKE ciphertext sealed by the client to keyvault's attested key.

use std::time::Duration;

use cloister_rpc::keyvault::keyvault_client::KeyvaultClient;
use cloister_types::ErrorCode;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::error::HttpError;
use crate::executor::ExecutorError;

/// Time allowed for one keyvault call (rotations re-encrypt a whole namespace).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A cheap-to-clone handle on keyvault.
#[derive(Clone)]
pub struct Keyvault {
    client: KeyvaultClient<Channel>,
    auth: AsciiMetadataValue,
}

impl Keyvault {
    /// Connects lazily to `url`, authenticating with the internal `token`.
    pub fn connect_lazy(url: &str, token: &str) -> Result<Self, ExecutorError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ExecutorError::BadUrl(url.to_owned(), e.to_string()))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5));
        let auth = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| ExecutorError::BadToken)?;
        Ok(Self {
            client: KeyvaultClient::new(endpoint.connect_lazy()),
            auth,
        })
    }

    /// A request carrying the internal token.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut()
            .insert(cloister_rpc::INTERNAL_AUTH_HEADER, self.auth.clone());
        req.set_timeout(CALL_TIMEOUT);
        req
    }

    /// The RPC client (cheap to clone).
    pub fn client(&self) -> KeyvaultClient<Channel> {
        self.client.clone()
    }
}

/// Maps a keyvault failure to a public error: keyvault's own code when it sent one.
pub fn kv_error(s: Status) -> HttpError {
    let code = s
        .metadata()
        .get(cloister_rpc::ERROR_CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ErrorCode::parse);
    match code {
        Some(code) if code != ErrorCode::Unavailable => {
            HttpError::new(code, s.message().to_owned())
        }
        _ => {
            tracing::warn!(code = ?s.code(), message = s.message(), "keyvault call failed");
            HttpError::new(ErrorCode::Unavailable, "keyvault is unavailable")
        }
    }
}
