//! The gateway's client of the executor's internal RPC.

use std::sync::Arc;
use std::time::Duration;

use cloister_rpc::executor::executor_client::ExecutorClient;
use cloister_rpc::executor::{
    AttestRequest, AttestResponse, InvokeRequest, InvokeResponse, StatusRequest, StatusResponse,
    ValidateRequest, ValidateResponse,
};
use cloister_types::ErrorCode;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::error::HttpError;
use crate::executor_link::{Link, LinkTrust};

/// The executor's attested link, when the gateway requires one.
struct Linking {
    trust: LinkTrust,
    /// The link in force: read by every invocation (no await, no contention).
    current: std::sync::RwLock<Option<Arc<Link>>>,
    /// Held while attesting, so concurrent invocations make one link, not one each.
    attesting: tokio::sync::Mutex<()>,
}

impl Linking {
    fn get(&self) -> Option<Arc<Link>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, link: Option<Arc<Link>>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = link;
    }
}

/// A cheap-to-clone handle on one executor (one multiplexed HTTP/2 connection).
#[derive(Clone)]
pub struct Executor {
    client: ExecutorClient<Channel>,
    auth: AsciiMetadataValue,
    linking: Option<Arc<Linking>>,
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
        Ok(Self {
            client,
            auth,
            linking: None,
        })
    }

    /// Requires the executor to prove itself (see [`crate::executor_link`]): invocations go
    /// only over an attested link, and responses without its MAC are refused.
    pub fn require_attestation(mut self, trust: LinkTrust) -> Self {
        self.linking = Some(Arc::new(Linking {
            trust,
            current: std::sync::RwLock::new(None),
            attesting: tokio::sync::Mutex::new(()),
        }));
        self
    }

    /// Asks the executor for evidence (`Attest`).
    pub async fn attest(&self, msg: AttestRequest) -> Result<AttestResponse, HttpError> {
        let req = self.request(msg, Duration::from_secs(10));
        self.client
            .clone()
            .attest(req)
            .await
            .map(|r| r.into_inner())
            .map_err(rpc_error)
    }

    /// The current attested link, attesting when there is none or it is old (`fresh`: always).
    async fn link(&self, l: &Linking, fresh: bool) -> Result<Arc<Link>, HttpError> {
        let usable = |k: &Arc<Link>| !k.expired();
        if !fresh && let Some(link) = l.get().filter(usable) {
            return Ok(link);
        }
        let stale = l.get().map(|k| k.id.clone());
        let _one = l.attesting.lock().await;
        // Another invocation may have attested while this one waited.
        if let Some(link) = l.get().filter(usable)
            && (!fresh || Some(&link.id) != stale.as_ref())
        {
            return Ok(link);
        }
        let link = Arc::new(crate::executor_link::attest(&l.trust, self).await?);
        l.set(Some(link.clone()));
        Ok(link)
    }

    async fn invoke_once(
        &self,
        msg: InvokeRequest,
        timeout: Duration,
    ) -> Result<InvokeResponse, Status> {
        let req = self.request(msg, timeout);
        self.client
            .clone()
            .invoke(req)
            .await
            .map(|r| r.into_inner())
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

    /// Runs one invocation (over the attested link when one is required: the response must
    /// carry its MAC).
    pub async fn invoke(
        &self,
        mut msg: InvokeRequest,
        timeout: Duration,
    ) -> Result<InvokeResponse, HttpError> {
        let Some(l) = &self.linking else {
            return self.invoke_once(msg, timeout).await.map_err(rpc_error);
        };
        let mut link = self.link(l, false).await?;
        msg.link_id.clone_from(&link.id);
        let mut resp = match self.invoke_once(msg.clone(), timeout).await {
            // The executor restarted and forgot the link: nothing ran; attest and retry once.
            Err(s) if error_code(&s) == Some(ErrorCode::AttestationFailed) => {
                link = self.link(l, true).await?;
                msg.link_id.clone_from(&link.id);
                self.invoke_once(msg.clone(), timeout)
                    .await
                    .map_err(rpc_error)?
            }
            r => r.map_err(rpc_error)?,
        };
        let digest = cloister_rpc::link::request_digest(&msg);
        if !cloister_rpc::link::check_response(&link.key, &digest, &mut resp) {
            tracing::error!(
                execution_id = %msg.execution_id,
                "ALARM: an invocation response failed the executor link MAC (forged or altered)"
            );
            l.set(None);
            return Err(HttpError::new(
                ErrorCode::AttestationFailed,
                "the executor's response is not authenticated by its attested link",
            ));
        }
        Ok(resp)
    }

    /// Whether invocations go over an attested link, and the executor measurement that link
    /// verified (`None` before the first link is made).
    pub fn link_state(&self) -> (bool, Option<String>) {
        match &self.linking {
            None => (false, None),
            Some(l) => (true, l.get().map(|link| link.measurement.clone())),
        }
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

/// The Cloister error code an internal call failed with, if it sent one.
fn error_code(s: &Status) -> Option<ErrorCode> {
    s.metadata()
        .get(cloister_rpc::ERROR_CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ErrorCode::parse)
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
