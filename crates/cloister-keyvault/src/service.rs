//! The gRPC service the gateway calls (internal token; ciphertext and metadata only).

use std::sync::Arc;

use cloister_rpc::keyvault::keyvault_server::Keyvault;
use cloister_rpc::keyvault::{
    self as pb, AttestationBundle, AttestationRequest, DeleteSecretResponse, ListSecretsRequest,
    ListSecretsResponse, PutSecretRequest, PutSecretResponse, RotateDekRequest, RotateDekResponse,
    RotateMekRequest, RotateMekResponse, SecretPathRequest, SecretVersionsResponse,
    VerifyAuditRequest, VerifyAuditResponse,
};
use cloister_types::{ErrorCode, SecretPath};
use tonic::{Request, Response, Status};

use crate::bundle::BundleSource;
use crate::error::VaultError;
use crate::vault::Vault;

/// gRPC front of the vault for the gateway.
pub struct KeyvaultService {
    vault: Arc<Vault>,
    bundle: Arc<BundleSource>,
}

impl KeyvaultService {
    /// Serves `vault` and its attestation `bundle`.
    pub fn new(vault: Arc<Vault>, bundle: Arc<BundleSource>) -> Self {
        Self { vault, bundle }
    }
}

/// A failed call carrying its stable error code in the `x-cloister-code` metadata.
pub fn coded(code: ErrorCode, message: impl Into<String>) -> Status {
    let mut s = match code.http_status() {
        400 | 413 | 422 => Status::invalid_argument(message),
        404 => Status::not_found(message),
        409 => Status::aborted(message),
        _ => Status::unavailable(message),
    };
    if let Ok(v) = code.as_str().parse() {
        s.metadata_mut().insert(cloister_rpc::ERROR_CODE_HEADER, v);
    }
    s
}

fn status(e: VaultError) -> Status {
    let code = e.code();
    if code == ErrorCode::Unavailable {
        tracing::error!(error = %e, "keyvault operation failed");
    }
    coded(code, e.to_string())
}

fn parse_path(p: &str) -> Result<SecretPath, Status> {
    SecretPath::parse(p).map_err(|e| coded(ErrorCode::InvalidSecretPath, e.to_string()))
}

fn actor(a: &str) -> &str {
    if a.is_empty() { "gateway" } else { a }
}

#[tonic::async_trait]
impl Keyvault for KeyvaultService {
    async fn attestation(
        &self,
        _: Request<AttestationRequest>,
    ) -> Result<Response<AttestationBundle>, Status> {
        let b = self.bundle.bundle().map_err(|e| {
            tracing::error!(error = %e, "cannot produce keyvault evidence");
            coded(
                ErrorCode::AttestationFailed,
                format!("cannot produce evidence: {e}"),
            )
        })?;
        Ok(Response::new(b))
    }

    async fn put_secret(
        &self,
        req: Request<PutSecretRequest>,
    ) -> Result<Response<PutSecretResponse>, Status> {
        let r = req.into_inner();
        let path = parse_path(&r.path)?;
        let value = self.vault.open_sealed(&path, &r.sealed).map_err(status)?;
        let (version, created_at) = self
            .vault
            .put(&path, value.expose(), r.rotate, actor(&r.actor))
            .await
            .map_err(status)?;
        Ok(Response::new(PutSecretResponse {
            path: path.to_string(),
            version,
            created_at,
        }))
    }

    async fn delete_secret(
        &self,
        req: Request<SecretPathRequest>,
    ) -> Result<Response<DeleteSecretResponse>, Status> {
        let r = req.into_inner();
        let path = parse_path(&r.path)?;
        let deleted = self
            .vault
            .delete(&path, actor(&r.actor))
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteSecretResponse { deleted }))
    }

    async fn list_secrets(
        &self,
        req: Request<ListSecretsRequest>,
    ) -> Result<Response<ListSecretsResponse>, Status> {
        let r = req.into_inner();
        let secrets = self
            .vault
            .list(&r.prefix)
            .await
            .map_err(status)?
            .into_iter()
            .map(|s| pb::SecretSummary {
                path: s.path,
                latest_version: s.latest_version,
                versions: s.versions,
                created_at: s.created_at,
                updated_at: s.updated_at,
            })
            .collect();
        Ok(Response::new(ListSecretsResponse { secrets }))
    }

    async fn secret_versions(
        &self,
        req: Request<SecretPathRequest>,
    ) -> Result<Response<SecretVersionsResponse>, Status> {
        let r = req.into_inner();
        let path = parse_path(&r.path)?;
        let versions = self
            .vault
            .versions(&path)
            .await
            .map_err(status)?
            .into_iter()
            .map(|v| pb::SecretVersion {
                version: v.version,
                dek_version: v.dek_version,
                created_at: v.created_at,
            })
            .collect();
        Ok(Response::new(SecretVersionsResponse {
            path: path.to_string(),
            versions,
        }))
    }

    async fn rotate_dek(
        &self,
        req: Request<RotateDekRequest>,
    ) -> Result<Response<RotateDekResponse>, Status> {
        let r = req.into_inner();
        cloister_types::names::validate_function_id(&r.function_id)
            .map_err(|e| coded(ErrorCode::InvalidRequest, e.to_string()))?;
        let (namespace, dek_version, reencrypted) = self
            .vault
            .rotate_dek(&r.function_id, actor(&r.actor))
            .await
            .map_err(status)?;
        Ok(Response::new(RotateDekResponse {
            namespace,
            dek_version,
            reencrypted,
        }))
    }

    async fn rotate_mek(
        &self,
        req: Request<RotateMekRequest>,
    ) -> Result<Response<RotateMekResponse>, Status> {
        let r = req.into_inner();
        let (mek_id, rewrapped) = self
            .vault
            .rotate_mek(actor(&r.actor))
            .await
            .map_err(status)?;
        Ok(Response::new(RotateMekResponse { mek_id, rewrapped }))
    }

    async fn verify_audit(
        &self,
        _: Request<VerifyAuditRequest>,
    ) -> Result<Response<VerifyAuditResponse>, Status> {
        let report = self.vault.verify_audit().await.map_err(status)?;
        let report_json = serde_json::to_string(&report)
            .map_err(|e| coded(ErrorCode::Unavailable, e.to_string()))?;
        Ok(Response::new(VerifyAuditResponse { report_json }))
    }
}
