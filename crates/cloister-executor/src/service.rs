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

/// gRPC front of a [`Supervisor`].
pub struct ExecutorService {
    sup: Arc<Supervisor>,
    links: Arc<Links>,
}

impl ExecutorService {
    /// Wraps a supervisor; `links` proves this executor to gateways.
    pub fn new(sup: Arc<Supervisor>, links: Arc<Links>) -> Self {
        Self { sup, links }
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

#[tonic::async_trait]
impl Executor for ExecutorService {
    async fn validate(
        &self,
        req: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        let r = req.into_inner();
        cloister_types::Entrypoint::parse(&r.entrypoint)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
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
        let function = r
            .function
            .ok_or_else(|| Status::invalid_argument("function is required"))?;
        let spec = spec_from(function);
        let max_in = self.sup.config().limits.max_input_bytes;
        if r.params_json.len() > max_in {
            return Err(Status::invalid_argument("params are over the size limit"));
        }
        let params = RawValue::from_string(r.params_json)
            .map_err(|e| Status::invalid_argument(format!("params are not JSON: {e}")))?;
        let execution_id = r.execution_id.clone();
        let job = Job {
            spec,
            params,
            code: r.code,
            execution_id: r.execution_id,
        };
        let resp = match self.sup.run(job).await {
            JobResult::CodeRequired => {
                // Nothing ran: the gateway resends this execution id with the code.
                self.links.forget(&execution_id);
                InvokeResponse {
                    outcome: Some(invoke_response::Outcome::CodeRequired(CodeRequired {})),
                    ..Default::default()
                }
            }
            JobResult::Ran {
                result,
                logs,
                duration,
            } => {
                let outcome = match result {
                    Ok(json) => invoke_response::Outcome::Success(Success {
                        result_json: json.get().to_owned(),
                    }),
                    Err(RunFailure {
                        code,
                        message,
                        stack,
                    }) => invoke_response::Outcome::Failure(pb::Failure {
                        message,
                        stack,
                        code: code.as_str().to_owned(),
                    }),
                };
                InvokeResponse {
                    outcome: Some(outcome),
                    logs,
                    duration_ms: duration.as_secs_f64() * 1000.0,
                    link_mac: Vec::new(),
                }
            }
        };
        let mut resp = resp;
        if let Some((key, digest)) = link {
            cloister_rpc::link::seal_response(&key, &digest, &mut resp);
        }
        Ok(Response::new(resp))
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
        }))
    }
}

/// Serves the executor on `listener` until `shutdown` resolves; reaps idle workers meanwhile.
pub async fn serve(
    listener: TcpListener,
    sup: Arc<Supervisor>,
    links: Arc<Links>,
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
    let server = ExecutorServer::new(ExecutorService::new(sup, links))
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
