//! Secret release over the mutually attested channel: an executor names the function version
//! and the hash of the code it loaded; keyvault answers with that version's owner-signed
//! manifest and exactly the secrets it declares, or refuses (and audits the refusal). Every
//! connection's attestation is audited.

use std::future::Future;
use std::sync::Arc;

use cloister_audit::{Action, AuditDraft};
use cloister_channel::{AttestedStream, ChannelAcceptor, ChannelError, TlsConn};
use cloister_rpc::keyvault::{
    ManifestView, ReleaseError, ReleaseRequest, ReleaseResponse, Released, release_response,
};
use cloister_types::{ErrorCode, namespace_of};
use prost::Message;
use tokio::net::TcpListener;

use crate::error::VaultError;
use crate::vault::Vault;

/// Serves executors on `listener` until `shutdown` resolves.
pub async fn serve_channel(
    listener: TcpListener,
    acceptor: Arc<ChannelAcceptor>,
    vault: Arc<Vault>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let vault = vault.clone();
        tokio::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(ch) => {
                    let m = hex::encode(&ch.peer().verified.claims().measurement.0);
                    let role = ch.peer().role.clone();
                    tracing::info!(peer = %addr, role, measurement = %m, "executor attested");
                    let audit =
                        AuditDraft::new(format!("{role}:{m}"), Action::AttestationSuccess, role)
                            .detail("peer", addr.to_string())
                            .detail("measurement", m.clone());
                    if let Err(e) = vault.audit(audit).await {
                        tracing::error!(error = %e, "cannot audit an attestation");
                        return;
                    }
                    if let Err(e) = serve_connection(ch, &vault, &m).await {
                        tracing::info!(peer = %addr, error = %e, "executor channel closed");
                    }
                }
                Err(e) => {
                    tracing::warn!(peer = %addr, error = %e, "refused a peer's attestation");
                    let audit =
                        AuditDraft::new(addr.to_string(), Action::AttestationFailure, "executor")
                            .detail("code", e.code())
                            .detail("reason", e.to_string());
                    if let Err(e) = vault.audit(audit).await {
                        tracing::error!(error = %e, "cannot audit an attestation failure");
                    }
                }
            }
        });
    }
}

async fn serve_connection<T: TlsConn>(
    mut ch: AttestedStream<T>,
    vault: &Vault,
    measurement: &str,
) -> Result<(), ChannelError> {
    let actor = format!("executor:{measurement}");
    loop {
        let bytes = match ch.recv().await {
            Ok(b) => b,
            Err(ChannelError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let outcome = match ReleaseRequest::decode(bytes.as_slice()) {
            Ok(req) => release(vault, req, &actor).await,
            Err(e) => Err(Refusal::new(
                ErrorCode::InvalidRequest,
                format!("malformed release request: {e}"),
            )),
        };
        let resp = ReleaseResponse {
            outcome: Some(match outcome {
                Ok(r) => release_response::Outcome::Released(r),
                Err(r) => release_response::Outcome::Error(ReleaseError {
                    code: r.code.as_str().to_owned(),
                    message: r.message,
                    secret: r.secret,
                }),
            }),
        };
        ch.send(&resp.encode_to_vec()).await?;
    }
}

/// Why a release was refused.
struct Refusal {
    code: ErrorCode,
    message: String,
    secret: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: String) -> Self {
        Self {
            code,
            message,
            secret: String::new(),
        }
    }
}

async fn release(vault: &Vault, req: ReleaseRequest, actor: &str) -> Result<Released, Refusal> {
    let refused = |e: VaultError| {
        if matches!(e, VaultError::Keys(_) | VaultError::Store(_)) {
            tracing::error!(error = %e, "secret release failed");
        }
        let mut r = Refusal::new(e.code(), e.to_string());
        if let VaultError::Missing(name) = e {
            r.secret = name;
        }
        r
    };
    let manifest = match vault
        .authority()
        .authorize_run(&req.function_id, req.version, &req.code_hash)
        .await
    {
        Ok(m) => m,
        Err(d) => {
            tracing::warn!(function_id = %req.function_id, version = req.version, error = %d, "release refused");
            let audit = AuditDraft::new(
                actor,
                Action::AuthorityRefusal,
                namespace_of(&req.function_id),
            )
            .detail("operation", "release")
            .detail("version", req.version)
            .detail("code_hash", req.code_hash.clone())
            .detail("code", d.code().as_str())
            .detail("execution_id", req.execution_id.clone());
            if let Err(e) = vault.audit(audit).await {
                tracing::error!(error = %e, "cannot audit a refused release");
            }
            return Err(refused(VaultError::Denied(d)));
        }
    };
    let (epoch, values) = vault
        .release(&manifest, &req.execution_id, actor)
        .await
        .map_err(refused)?;
    let m = &manifest.manifest;
    Ok(Released {
        epoch,
        values: values
            .into_iter()
            .map(|(k, v)| (k, v.expose().to_vec()))
            .collect(),
        manifest: Some(ManifestView {
            function_id: manifest.function_id.clone(),
            version: manifest.version,
            name: m.name.clone(),
            environment: m.environment.clone(),
            runtime: m.runtime.clone(),
            entrypoint: m.entrypoint.clone(),
            code_hash: m.code_hash.clone(),
            secrets: m.secrets.clone(),
            timeout_ms: m.limits.timeout_ms,
            memory_mb: m.limits.memory_mb,
            digest: manifest.digest.clone(),
        }),
    })
}
