//! The gateway's client of the executor's internal RPC.

use std::time::Duration;

use cloister_rpc::executor::executor_client::ExecutorClient;
use cloister_rpc::executor::{
    InvokeRequest, InvokeResponse, StatusRequest, StatusResponse, ValidateRequest, ValidateResponse,
};
use cloister_types::ErrorCode;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::error::HttpError;

/// A cheap-to-clone handle on one executor (one multiplexed HTTP/2 connection).
#[derive(Clone)]
pub struct Executor {
    client: ExecutorClient<Channel>,
    auth: AsciiMetadataValue,
}

/// Why the executor could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The URL is not a valid endpoint.
    #[error("invalid executor URL {0:?}: {1}")]
    BadUrl(String, String),
    /// The internal token cannot be sent as a header.
    #[error("the internal token contains characters not allowed in a header")]
    BadToken,
}

impl Executor {
    /// Connects lazily to `url` (e.g. `http://127.0.0.1:9000`), authenticating with `token`.
    pub fn connect_lazy(url: &str, token: &str) -> Result<Self, ExecutorError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ExecutorError::BadUrl(url.to_owned(), e.to_string()))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(30));
        let auth = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| ExecutorError::BadToken)?;
        let client = ExecutorClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20);
        Ok(Self { client, auth })
    }

    fn request<T>(&self, msg: T, timeout: Duration) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut()
            .insert(cloister_rpc::INTERNAL_AUTH_HEADER, self.auth.clone());
        req.set_timeout(timeout);
        req
    }

    /// Compiles code in a sandboxed worker.
    pub async fn validate(
        &self,
        msg: ValidateRequest,
        timeout: Duration,
    ) -> Result<ValidateResponse, HttpError> {
        let req = self.request(msg, timeout);
        self.client
            .clone()
            .validate(req)
            .await
            .map(|r| r.into_inner())
            .map_err(rpc_error)
    }

    /// Runs one invocation.
    pub async fn invoke(
        &self,
        msg: InvokeRequest,
        timeout: Duration,
    ) -> Result<InvokeResponse, HttpError> {
        let req = self.request(msg, timeout);
        self.client
            .clone()
            .invoke(req)
            .await
            .map(|r| r.into_inner())
            .map_err(rpc_error)
    }

    /// Worker pool status.
    pub async fn status(&self) -> Result<StatusResponse, HttpError> {
        let req = self.request(StatusRequest {}, Duration::from_secs(2));
        self.client
            .clone()
            .status(req)
            .await
            .map(|r| r.into_inner())
            .map_err(rpc_error)
    }
}

/// Maps an RPC failure to a public error without leaking internal details.
fn rpc_error(s: Status) -> HttpError {
    match s.code() {
        Code::InvalidArgument => HttpError::new(ErrorCode::InvalidRequest, s.message().to_owned()),
        Code::ResourceExhausted => HttpError::new(
            ErrorCode::RateLimited,
            "the executor is at capacity; retry later",
        ),
        _ => {
            tracing::warn!(code = ?s.code(), message = s.message(), "executor call failed");
            HttpError::new(ErrorCode::Unavailable, "the executor is unavailable")
        }
    }
}
