//! The executor's internal RPC service and its server loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cloister_rpc::InternalAuth;
use cloister_rpc::executor::executor_server::{Executor, ExecutorServer};
use cloister_rpc::executor::{
    self as pb, CodeRequired, InvokeRequest, InvokeResponse, StatusRequest, StatusResponse,
    Success, ValidateRequest, ValidateResponse, WorkerStatus, invoke_response,
};
use cloister_types::{ErrorCode, Limits};
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::link::Links;
use crate::pool::{FunctionSpec, Job, JobResult, RunFailure, Supervisor, ValidateError};
use crate::receipt::Notary;
use crate::sealed::{Opened, SealedDoor};
use cloister_types::sealed::is_function_failure;

/// gRPC front of a [`Supervisor`].
pub struct ExecutorService {
    sup: Arc<Supervisor>,
    links: Arc<Links>,
    door: Arc<SealedDoor>,
    notary: Option<Arc<Notary>>,
}

impl ExecutorService {
    /// Wraps a supervisor; `links` proves this executor to gateways, `door` opens sealed
    /// invocations, `notary` signs receipts (none: receipts are refused).
    pub fn new(
        sup: Arc<Supervisor>,
        links: Arc<Links>,
        door: Arc<SealedDoor>,
        notary: Option<Arc<Notary>>,
    ) -> Self {
        Self {
            sup,
            links,
            door,
            notary,
        }
    }
}

/// What a receipt states about the input, known before the job runs.
struct ReceiptAsk {
    nonce: String,
    input_sha256: String,
    fleet_key_id: String,
    request_id: String,
    /// The receipt key whose evidence the caller already holds (empty: none).
    caller_holds: Vec<u8>,
}

/// The outcome label and the digest of the visible payload a receipt names as the output.
fn output_digest(outcome: &invoke_response::Outcome) -> Option<(String, String)> {
    use cloister_types::receipt::sha256_hex;
    match outcome {
        invoke_response::Outcome::Success(s) => Some((
            cloister_types::sealed::OUTCOME_OK.to_owned(),
            sha256_hex(s.result_json.as_bytes()),
        )),
        invoke_response::Outcome::Failure(f) => {
            Some((f.code.clone(), sha256_hex(f.message.as_bytes())))
        }
        invoke_response::Outcome::Sealed(s) => Some((s.outcome.clone(), sha256_hex(&s.sealed))),
        invoke_response::Outcome::CodeRequired(_) => None,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn failed(code: ErrorCode, message: String) -> InvokeResponse {
    InvokeResponse {
        outcome: Some(invoke_response::Outcome::Failure(pb::Failure {
            message,
            stack: None,
            code: code.as_str().to_owned(),
            cause: None,
        })),
        ..Default::default()
    }
}

fn spec_from(f: pb::FunctionRef) -> FunctionSpec {
    FunctionSpec {
        function_id: f.function_id,
        version: f.version,
        code_hash: f.code_hash,
        secrets_epoch: f.secrets_epoch,
    }
}

fn plain_outcome(result: Result<Box<RawValue>, RunFailure>) -> invoke_response::Outcome {
    match result {
        Ok(json) => invoke_response::Outcome::Success(Success {
            result_json: json.get().to_owned(),
        }),
        Err(RunFailure {
            code,
            message,
            stack,
            cause,
        }) => invoke_response::Outcome::Failure(pb::Failure {
            message,
            stack,
            code: code.as_str().to_owned(),
            cause: cause.map(|c| c.as_str().to_owned()),
        }),
    }
}

/// The signed receipt (JSON) for a job that ran by manifest `m` and answered `resp`.
fn receipt_for(
    notary: &Notary,
    ask: ReceiptAsk,
    m: &crate::secrets::RunManifest,
    execution_id: &str,
    resp: &InvokeResponse,
    key_uses: Vec<cloister_types::receipt::ReceiptKeyUse>,
    egress: Vec<cloister_types::receipt::ReceiptEgress>,
) -> String {
    let Some((outcome, output_sha256)) = resp.outcome.as_ref().and_then(output_digest) else {
        return String::new();
    };
    let receipt = notary.sign(
        cloister_types::receipt::ReceiptBody {
            function_id: m.function_id.clone(),
            version: m.version,
            code_hash: m.code_hash.clone(),
            manifest_digest: m.digest.clone(),
            input_sha256: ask.input_sha256,
            output_sha256,
            outcome,
            execution_id: execution_id.to_owned(),
            time: unix_now(),
            nonce: ask.nonce,
            fleet_key_id: ask.fleet_key_id,
            request_id: ask.request_id,
            key_uses,
            egress,
        },
        &ask.caller_holds,
    );
    serde_json::to_string(&receipt).unwrap_or_default()
}

/// A sealed invocation's answer: the result or the function's own failure sealed for the
/// caller; a failure before the function ran stays visible (it holds nothing of the input).
fn seal_outcome(
    opened: &Opened,
    execution_id: &str,
    result: Result<Box<RawValue>, RunFailure>,
    logs: Vec<String>,
) -> Result<invoke_response::Outcome, cloister_crypto::CryptoError> {
    match result {
        Err(f) if !is_function_failure(f.code) => {
            Ok(invoke_response::Outcome::Failure(pb::Failure {
                message: f.message,
                stack: None,
                code: f.code.as_str().to_owned(),
                cause: None,
            }))
        }
        result => opened
            .seal(execution_id, result, logs)
            .map(invoke_response::Outcome::Sealed),
    }
}

impl ExecutorService {
    /// What a receipt will state about the request, when the caller asked for one.
    fn receipt_ask(&self, r: &InvokeRequest) -> Result<Option<ReceiptAsk>, Status> {
        if r.receipt_nonce.is_empty() {
            return Ok(None);
        }
        if r.receipt_nonce.len() > cloister_types::receipt::MAX_NONCE_LEN {
            return Err(Status::invalid_argument(
                "the receipt nonce is over 64 bytes",
            ));
        }
        if self.notary.is_none() {
            return Err(Status::failed_precondition(
                "this executor has no attested receipt key",
            ));
        }
        let sha = cloister_types::receipt::sha256_hex;
        Ok(Some(match &r.sealed {
            Some(s) => ReceiptAsk {
                nonce: hex::encode(&r.receipt_nonce),
                input_sha256: sha(&s.ciphertext),
                fleet_key_id: s.key_id.clone(),
                request_id: s.request_id.clone(),
                caller_holds: r.receipt_signer.clone(),
            },
            None => ReceiptAsk {
                nonce: hex::encode(&r.receipt_nonce),
                input_sha256: sha(r.params_json.as_bytes()),
                fleet_key_id: String::new(),
                request_id: String::new(),
                caller_holds: r.receipt_signer.clone(),
            },
        }))
    }

    /// MACs `resp` for the attested link the request named, if any.
    fn finish(
        &self,
        link: Option<(Arc<cloister_crypto::MacKey>, [u8; 32])>,
        mut resp: InvokeResponse,
    ) -> InvokeResponse {
        if let Some((key, digest)) = link {
            cloister_rpc::link::seal_response(&key, &digest, &mut resp);
        }
        resp
    }
}

#[tonic::async_trait]
impl Executor for ExecutorService {
    async fn validate(
        &self,
        req: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        let mut r = req.into_inner();
        cloister_types::Entrypoint::parse(&r.entrypoint)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let confidential = r.sealed_code.is_some();
        if let Some(c) = r.sealed_code.take() {
            if !r.code.is_empty() {
                return Err(Status::invalid_argument(
                    "confidential code comes sealed, not also in plain",
                ));
            }
            r.code = self.door.open_code(&c, unix_now()).await.map_err(|e| {
                let mut s = Status::invalid_argument(e.message);
                if let Ok(v) = e.code.as_str().parse() {
                    s.metadata_mut().insert(cloister_rpc::ERROR_CODE_HEADER, v);
                }
                s
            })?;
        }
        if r.code.len() > self.sup.config().limits.max_code_bytes {
            return Err(Status::invalid_argument("code is over the size limit"));
        }
        let limits = Limits {
            timeout_ms: r.timeout_ms,
            memory_mb: r.memory_mb,
        };
        let resp = match self.sup.validate(r.code, &r.entrypoint, limits).await {
            Ok(()) => ValidateResponse {
                ok: true,
                ..Default::default()
            },
            // Compiler messages quote the code: for confidential code only the verdict leaves.
            Err(ValidateError::Invalid(_)) if confidential => ValidateResponse {
                ok: false,
                message: "the confidential code does not compile or lacks its entrypoint \
                          (details are not shown for confidential code)"
                    .into(),
                line: None,
                column: None,
            },
            Err(ValidateError::Invalid(e)) => ValidateResponse {
                ok: false,
                message: e.message,
                line: e.line,
                column: e.column,
            },
            Err(ValidateError::Unavailable(why)) => return Err(Status::unavailable(why)),
        };
        Ok(Response::new(resp))
    }

    async fn invoke(
        &self,
        req: Request<InvokeRequest>,
    ) -> Result<Response<InvokeResponse>, Status> {
        let r = req.into_inner();
        // The link is checked before anything runs: a gateway that re-attests after an
        // executor restart retries without the function having run twice. A linked request
        // runs at most once per execution id (a replay on the link is refused).
        let attestation_failed = |msg: &str| {
            let mut s = Status::failed_precondition(msg.to_owned());
            if let Ok(v) = ErrorCode::AttestationFailed.as_str().parse() {
                s.metadata_mut().insert(cloister_rpc::ERROR_CODE_HEADER, v);
            }
            s
        };
        let link = if r.link_id.is_empty() {
            None
        } else {
            let key = self
                .links
                .key(&r.link_id)
                .ok_or_else(|| attestation_failed("unknown link: attest again"))?;
            let digest = cloister_rpc::link::request_digest(&r);
            if !self.links.first_run(&r.execution_id) {
                return Err(Status::already_exists(
                    "this execution id already ran (replayed request)",
                ));
            }
            Some((key, digest))
        };
        let receipt = self.receipt_ask(&r)?;
        let function = r
            .function
            .ok_or_else(|| Status::invalid_argument("function is required"))?;
        let spec = spec_from(function);
        let max_in = self.sup.config().limits.max_input_bytes;
        let execution_id = r.execution_id.clone();
        let (params, opened) = match &r.sealed {
            None => {
                if r.params_json.len() > max_in {
                    return Err(Status::invalid_argument("params are over the size limit"));
                }
                let params = RawValue::from_string(r.params_json)
                    .map_err(|e| Status::invalid_argument(format!("params are not JSON: {e}")))?;
                (params, None)
            }
            Some(sealed) => {
                if !r.params_json.is_empty() {
                    return Err(Status::invalid_argument(
                        "a sealed invocation carries no plain params",
                    ));
                }
                match self.door.open(sealed, unix_now(), max_in).await {
                    Ok(o) => (o.params.clone(), Some(o)),
                    Err(refusal) => {
                        let resp = failed(refusal.code, refusal.message);
                        return Ok(Response::new(self.finish(link, resp)));
                    }
                }
            }
        };
        // Refused before any code is fetched or run: the caller sealed for other code.
        if let Some(f) = opened.as_ref().and_then(|o| {
            o.expected
                .mismatch(&spec.function_id, spec.version, &spec.code_hash)
        }) {
            return Ok(Response::new(self.finish(link, failed(f.code, f.message))));
        }
        let job = Job {
            spec,
            params,
            code: r.code,
            execution_id: r.execution_id,
            expected: opened.as_ref().map(|o| o.expected.clone()),
        };
        let mut key_uses = Vec::new();
        let mut egress = Vec::new();
        let (mut resp, manifest) = match self.sup.run(job).await {
            JobResult::CodeRequired => {
                // Nothing ran: the gateway resends this execution id (and request) with the
                // code.
                self.links.forget(&execution_id);
                if let Some(o) = &opened {
                    self.door.forget(&o.request_id);
                }
                let resp = InvokeResponse {
                    outcome: Some(invoke_response::Outcome::CodeRequired(CodeRequired {})),
                    ..Default::default()
                };
                (resp, None)
            }
            JobResult::Ran {
                result,
                logs,
                duration,
                manifest,
                worker_replaced,
                key_uses: uses,
                egress: contacted,
            } => {
                key_uses = uses;
                egress = contacted;
                let duration_ms = duration.as_secs_f64() * 1000.0;
                let resp = match &opened {
                    Some(o) => match seal_outcome(o, &execution_id, result, logs) {
                        Ok(outcome) => InvokeResponse {
                            outcome: Some(outcome),
                            duration_ms,
                            worker_replaced,
                            ..Default::default()
                        },
                        Err(_) => failed(ErrorCode::Internal, "cannot seal the answer".into()),
                    },
                    None => InvokeResponse {
                        outcome: Some(plain_outcome(result)),
                        logs,
                        duration_ms,
                        worker_replaced,
                        ..Default::default()
                    },
                };
                (resp, manifest)
            }
        };
        if let (Some(ask), Some(m), Some(notary)) = (receipt, manifest, &self.notary) {
            resp.receipt_json =
                receipt_for(notary, ask, &m, &execution_id, &resp, key_uses, egress);
        }
        Ok(Response::new(self.finish(link, resp)))
    }

    async fn attest(
        &self,
        req: Request<pb::AttestRequest>,
    ) -> Result<Response<pb::AttestResponse>, Status> {
        self.links
            .attest(&req.into_inner())
            .map(Response::new)
            .map_err(|e| match e {
                crate::link::LinkError::Invalid(_) => Status::invalid_argument(e.to_string()),
                e => Status::unavailable(e.to_string()),
            })
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let (workers, spawned_total, retired_total, filesystem_isolated) = self.sup.snapshot();
        Ok(Response::new(StatusResponse {
            workers: workers
                .into_iter()
                .map(|w| WorkerStatus {
                    function_id: w.function_id,
                    version: w.version,
                    pid: w.pid,
                    rss_bytes: w.rss_bytes,
                    busy: false,
                })
                .collect(),
            spawned_total,
            retired_total,
            filesystem_isolated,
            egress: self
                .sup
                .egress_totals()
                .into_iter()
                .map(
                    |((function_id, origin), t)| cloister_rpc::executor::EgressTotals {
                        function_id,
                        origin,
                        requests: t.requests,
                        failures: t.failures,
                        bytes_sent: t.bytes_sent,
                        bytes_received: t.bytes_received,
                    },
                )
                .collect(),
        }))
    }
}

/// Serves the executor on `listener` until `shutdown` resolves; reaps idle workers meanwhile.
pub async fn serve(
    listener: TcpListener,
    sup: Arc<Supervisor>,
    links: Arc<Links>,
    door: Arc<SealedDoor>,
    notary: Option<Arc<Notary>>,
    internal_token: &str,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let reaper = {
        let sup = sup.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                sup.reap_idle();
            }
        })
    };
    let auth = InternalAuth::new(internal_token);
    let server = ExecutorServer::new(ExecutorService::new(sup, links, door, notary))
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20);
    let svc = tonic::service::interceptor::InterceptedService::new(server, move |r| auth.check(r));
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .serve_with_incoming_shutdown(
            svc,
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    reaper.abort();
    result
}
