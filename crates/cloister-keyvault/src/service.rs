//! The gRPC service the gateway calls (internal token; ciphertext and metadata only).

use std::sync::Arc;

use cloister_authority::ops::SecretOp;
use cloister_rpc::keyvault::keyvault_server::Keyvault;
use cloister_rpc::keyvault::{
    self as pb, ActivateResponse, AttestationBundle, AttestationRequest, DeleteSecretResponse,
    GrantIdentityResponse, ListSecretsRequest, ListSecretsResponse, PutSecretRequest,
    PutSecretResponse, RegisterManifestResponse, RotateDekRequest, RotateDekResponse,
    RotateMekRequest, RotateMekResponse, SecretPathRequest, SecretVersionsResponse, SignedRequest,
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
        401 => Status::unauthenticated(message),
        403 => Status::permission_denied(message),
        404 => Status::not_found(message),
        409 => Status::aborted(message),
        429 => Status::resource_exhausted(message),
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

/// The actor of an event the gateway asks for: always labelled as the gateway's claim.
fn actor(a: &str) -> String {
    if a.is_empty() {
        "gateway".to_owned()
    } else {
        format!("gateway:{}", a.chars().take(128).collect::<String>())
    }
}

impl KeyvaultService {
    /// Checks the owner's signature over a secret write and audits a refusal.
    async fn authorize_write(
        &self,
        signed: &[u8],
        path: &SecretPath,
        op: SecretOp,
        sealed: &[u8],
        token: &str,
    ) -> Result<String, Status> {
        if signed.is_empty() {
            return Err(coded(
                ErrorCode::BadSignature,
                "secret writes must be signed by an owner of the function (cloister identity create)",
            ));
        }
        match self
            .vault
            .authority()
            .authorize_secret_write(signed, path, op, sealed)
            .await
        {
            Ok(id) => Ok(format!("{id} ({})", actor(token))),
            Err(d) => {
                let e = VaultError::Denied(d);
                self.refusal("secret_write", &path.to_string(), &e, token)
                    .await;
                Err(status(e))
            }
        }
    }

    /// The plaintext of a confidential manifest's sealed code: the manifest's signature,
    /// domain, platform and expiry are verified first (registration then checks its signer
    /// and nonce), and the code opens only for that manifest's digest and must hash to its
    /// code hash; `None` for other manifests.
    fn confidential_code(
        &self,
        r: &SignedRequest,
    ) -> Result<Option<cloister_crypto::SecretBytes>, VaultError> {
        let v = cloister_authority::request::verify::<cloister_authority::Manifest>(
            &r.signed,
            self.vault.platform(),
            cloister_authority::request::unix_now(),
            crate::authority::MAX_REQUEST_TTL_SECS,
        )
        .map_err(|e| VaultError::Invalid(format!("manifest: {e}")))?;
        let digest = hex::encode(v.digest());
        let m = v.body().clone();
        match (&r.sealed_code, m.confidential) {
            (None, false) => Ok(None),
            (Some(_), false) => Err(VaultError::Invalid(
                "sealed code comes only with a manifest that says confidential".into(),
            )),
            (None, true) => Err(VaultError::Invalid(
                "a confidential manifest needs its sealed code".into(),
            )),
            (Some(sealed), true) => self
                .vault
                .open_sealed_code(
                    sealed,
                    &digest,
                    &m.code_hash,
                    cloister_authority::request::unix_now(),
                )
                .map(Some),
        }
    }

    /// A key's public facts with the functions it is granted to, signed by keyvault for the
    /// function `function_id` named `function`; with `request_sha256`, also signed as the
    /// answer to that owner's request.
    async fn key_view(
        &self,
        function_id: &str,
        function: &str,
        k: crate::function_keys::KeyInfo,
        request_sha256: Option<&[u8; 32]>,
    ) -> Result<pb::KeyView, VaultError> {
        let name = cloister_types::KeyName::parse(&k.name)
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let mut granted_to: Vec<String> = self
            .vault
            .key_grants(function_id, &name)
            .await?
            .into_values()
            .map(|g| g.function)
            .collect();
        granted_to.sort();
        let public_key = k.public_key.unwrap_or_default();
        let facts = cloister_types::binding::KeyViewFacts {
            function_id,
            function,
            name: &k.name,
            algorithm: k.algorithm.as_str(),
            version: k.version,
            public_key: &public_key,
            exportable: k.exportable,
            imported: k.imported,
            granted_to: &granted_to,
        };
        let (view_sig, write_sig) = self.vault.sign_key_view(&facts, request_sha256);
        Ok(pb::KeyView {
            algorithm: k.algorithm.as_str().to_owned(),
            version: k.version,
            public_key,
            name: k.name,
            function_id: function_id.to_owned(),
            function: function.to_owned(),
            keyvault_signature: view_sig.to_vec(),
            exportable: k.exportable,
            imported: k.imported,
            granted_to,
            write_signature: write_sig.map(|s| s.to_vec()).unwrap_or_default(),
        })
    }

    /// An owner's key change whose signature checked out; the view keyvault returns is
    /// signed as the answer to that request.
    async fn write_key_for(
        &self,
        actor: &str,
        w: &cloister_authority::ops::KeyWrite,
        sealed: &[u8],
        request_sha256: &[u8; 32],
    ) -> Result<pb::KeyView, VaultError> {
        use cloister_authority::ops::KeyOp;
        let name = cloister_types::KeyName::parse(&w.name)
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let info = match &w.op {
            KeyOp::Create {
                algorithm,
                exportable,
            } => {
                let alg = parse_algorithm(algorithm)?;
                self.vault
                    .create_key(&w.function_id, &name, alg, *exportable, actor)
                    .await?
            }
            KeyOp::Import {
                algorithm,
                exportable,
                sealed_sha256,
            } => {
                use sha2::Digest as _;
                let alg = parse_algorithm(algorithm)?;
                if hex::encode(sha2::Sha256::digest(sealed)) != *sealed_sha256 {
                    return Err(VaultError::Invalid(
                        "the sealed key is not the one the owner signed for (sealed_sha256 differs)"
                            .into(),
                    ));
                }
                self.vault
                    .import_key(&w.function_id, &name, alg, sealed, *exportable, actor)
                    .await?
            }
            KeyOp::Rotate => self.vault.rotate_key(&w.function_id, &name, actor).await?,
            KeyOp::Grant {
                to_function_id,
                to_function,
                ..
            }
            | KeyOp::Revoke {
                to_function_id,
                to_function,
            } => {
                // The grantee is named by id and name; keyvault binds the two, so a gateway
                // cannot point an owner's grant at another function.
                let grantee = self
                    .vault
                    .authority()
                    .function(to_function_id)
                    .await?
                    .ok_or_else(|| {
                        VaultError::Denied(crate::authority::Denied::UnknownFunction(
                            to_function_id.clone(),
                        ))
                    })?;
                if &grantee.name != to_function {
                    return Err(VaultError::Denied(
                        crate::authority::Denied::ManifestMismatch(format!(
                            "function {to_function_id} is named {:?}, not {to_function:?}",
                            grantee.name
                        )),
                    ));
                }
                let grant = match &w.op {
                    KeyOp::Grant { limits, .. } => Some(limits.clone()),
                    _ => None,
                };
                self.vault
                    .grant_key(
                        &w.function_id,
                        &name,
                        to_function_id,
                        to_function,
                        grant,
                        actor,
                    )
                    .await?;
                self.vault.key_info(&w.function_id, &name).await?
            }
            _ => return Err(VaultError::Invalid("unknown key operation".into())),
        };
        self.key_view(&w.function_id, &w.function, info, Some(request_sha256))
            .await
    }

    /// An export both signatures of which checked out.
    async fn export_for(
        &self,
        x: &cloister_authority::ops::KeyExport,
        owner: &str,
        admin: &str,
        request_sha256: &[u8; 32],
    ) -> Result<pb::KeyExportReply, VaultError> {
        let name = cloister_types::KeyName::parse(&x.name)
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let recipient = hex::decode(&x.recipient)
            .ok()
            .and_then(|b| cloister_crypto::HpkePublicKey::from_slice(&b).ok())
            .ok_or_else(|| {
                VaultError::Invalid("recipient must be a hex X25519 public key (32 bytes)".into())
            })?;
        let out = self
            .vault
            .export_key(
                &x.function_id,
                &name,
                x.version,
                &recipient,
                (owner, admin),
                request_sha256,
            )
            .await?;
        Ok(pb::KeyExportReply {
            algorithm: out.algorithm.as_str().to_owned(),
            key_version: out.version,
            sealed: out.sealed,
            public_key: out.public_key.unwrap_or_default(),
            keyvault_signature: out.keyvault_signature.to_vec(),
        })
    }

    /// The function `function_id` as keyvault registered it (`function_not_found` if none).
    async fn registered_function(
        &self,
        function_id: &str,
    ) -> Result<std::sync::Arc<crate::authority::FunctionRecord>, Status> {
        self.vault
            .authority()
            .function(function_id)
            .await
            .map_err(|d| status(VaultError::Denied(d)))?
            .ok_or_else(|| coded(ErrorCode::FunctionNotFound, "no such function"))
    }

    /// The message of an owner's key use: sent in plain, or sealed to keyvault for this
    /// function and key (opened here; the gateway never read it).
    fn key_use_message(
        &self,
        r: &pb::KeyUseRequest,
        u: &cloister_authority::ops::KeyUse,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, VaultError> {
        if r.sealed_message.is_empty() {
            return Ok(zeroize::Zeroizing::new(r.message.clone()));
        }
        if !r.message.is_empty() {
            return Err(VaultError::Invalid(
                "a key use carries its message in plain or sealed, not both".into(),
            ));
        }
        self.vault
            .hpke_open(
                &cloister_types::binding::key_use_info(&u.function_id, &u.name),
                &r.sealed_message,
            )
            .map(|m| zeroize::Zeroizing::new(m.expose().to_vec()))
            .map_err(|_| VaultError::BadSealedValue)
    }

    /// An owner's key use whose signature checked out: the message must be the one signed
    /// for; keyvault signs its result over the request's digest.
    async fn use_key_for(
        &self,
        message: &[u8],
        signer: &str,
        u: &cloister_authority::ops::KeyUse,
        request_sha256: &[u8; 32],
    ) -> Result<pb::KeyUseReply, VaultError> {
        use cloister_authority::ops::KeyUseOp;
        use sha2::Digest as _;
        let invalid = VaultError::Invalid;
        if hex::encode(sha2::Sha256::digest(message)) != u.message_sha256 {
            return Err(invalid(
                "the message is not the one the owner signed for (message_sha256 differs)".into(),
            ));
        }
        let name = cloister_types::KeyName::parse(&u.name).map_err(|e| invalid(e.to_string()))?;
        let hash = cloister_types::SignHash::parse(&u.hash).ok_or_else(|| {
            invalid(format!(
                "unknown hash {:?}: use sha256, keccak256 or prehashed",
                u.hash
            ))
        })?;
        let signature_bytes;
        let op = match &u.op {
            KeyUseOp::Sign => crate::function_keys::OwnerKeyOp::Sign,
            KeyUseOp::Verify { signature } => {
                signature_bytes = hex::decode(signature)
                    .map_err(|_| invalid("the signature to check must be hex".into()))?;
                crate::function_keys::OwnerKeyOp::Verify {
                    signature: &signature_bytes,
                }
            }
            _ => return Err(invalid("unknown key use".into())),
        };
        let res = self
            .vault
            .use_key_as_owner(
                &u.function_id,
                crate::function_keys::OwnerKeyRequest {
                    name: &name,
                    version: u.version,
                    message,
                    hash,
                    op,
                },
                signer,
            )
            .await?;
        let keyvault_signature = self.vault.sign_key_use(request_sha256, &res).to_vec();
        let (signature, recovery_id) = match res.signature {
            Some(s) => (s.bytes, s.recovery_id),
            None => (Vec::new(), None),
        };
        Ok(pb::KeyUseReply {
            algorithm: res.algorithm.as_str().to_owned(),
            key_version: res.version,
            signature,
            recovery_id: recovery_id.map(u32::from),
            valid: res.valid,
            keyvault_signature,
        })
    }

    async fn refusal(&self, op: &str, subject: &str, e: &VaultError, token: &str) {
        let audit = cloister_audit::AuditDraft::new(
            actor(token),
            cloister_audit::Action::AuthorityRefusal,
            subject,
        )
        .detail("operation", op)
        .detail("code", e.code().as_str())
        .detail("reason", e.to_string());
        if let Err(e) = self.vault.audit_untrusted(audit).await {
            tracing::error!(error = %e, "cannot audit a refusal");
        }
    }
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
        let op = if r.rotate {
            SecretOp::Rotate
        } else {
            SecretOp::Put
        };
        let who = self
            .authorize_write(&r.signed, &path, op, &r.sealed, &r.actor)
            .await?;
        let value = self.vault.open_sealed(&path, &r.sealed).map_err(status)?;
        let (version, created_at) = self
            .vault
            .put(&path, value.expose(), r.rotate, &who)
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
        let who = self
            .authorize_write(&r.signed, &path, SecretOp::Delete, &[], &r.actor)
            .await?;
        let deleted = self.vault.delete(&path, &who).await.map_err(status)?;
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
            .rotate_dek(&r.function_id, &actor(&r.actor))
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
            .rotate_mek(&actor(&r.actor))
            .await
            .map_err(status)?;
        Ok(Response::new(RotateMekResponse { mek_id, rewrapped }))
    }

    async fn verify_audit(
        &self,
        req: Request<VerifyAuditRequest>,
    ) -> Result<Response<VerifyAuditResponse>, Status> {
        let nonce = req.into_inner().nonce;
        if !(16..=64).contains(&nonce.len()) {
            return Err(coded(
                ErrorCode::InvalidRequest,
                "the verdict nonce must be 16 to 64 bytes",
            ));
        }
        let report = self.vault.verify_audit().await.map_err(status)?;
        let report_json = serde_json::to_string(&report)
            .map_err(|e| coded(ErrorCode::Unavailable, e.to_string()))?;
        let signature = self.vault.sign_verdict(&nonce, &report_json).to_vec();
        Ok(Response::new(VerifyAuditResponse {
            report_json,
            signature,
        }))
    }

    async fn read_audit(
        &self,
        req: Request<pb::ReadAuditRequest>,
    ) -> Result<Response<pb::ReadAuditResponse>, Status> {
        let r = req.into_inner();
        if !(1..=1000).contains(&r.limit) {
            return Err(coded(ErrorCode::InvalidRequest, "limit must be 1..=1000"));
        }
        let page = self
            .vault
            .audit_page(r.after, r.limit)
            .await
            .map_err(status)?;
        let page_json = serde_json::to_string(&page)
            .map_err(|e| coded(ErrorCode::Unavailable, e.to_string()))?;
        Ok(Response::new(pb::ReadAuditResponse { page_json }))
    }

    async fn epoch_changes(
        &self,
        req: Request<pb::EpochChangesRequest>,
    ) -> Result<Response<pb::EpochChangesResponse>, Status> {
        let r = req.into_inner();
        if !(1..=10_000).contains(&r.limit) {
            return Err(coded(ErrorCode::InvalidRequest, "limit must be 1..=10000"));
        }
        let changes = self
            .vault
            .epoch_changes(r.after, r.limit)
            .await
            .map_err(status)?
            .into_iter()
            .map(|c| pb::EpochChange {
                namespace: c.namespace,
                epoch: c.epoch,
                changed: c.changed,
            })
            .collect();
        Ok(Response::new(pb::EpochChangesResponse { changes }))
    }

    async fn record_event(
        &self,
        req: Request<pb::GatewayEvent>,
    ) -> Result<Response<pb::RecordEventResponse>, Status> {
        use cloister_audit::Action;
        let r = req.into_inner();
        let Some(action) = Action::gateway_reported(&r.action) else {
            return Err(coded(
                ErrorCode::InvalidRequest,
                format!("the gateway may not record {:?} events", r.action),
            ));
        };
        if r.subject.len() > 512 || r.actor.len() > 128 || r.details_json.len() > 4096 {
            return Err(coded(ErrorCode::PayloadTooLarge, "event too large"));
        }
        let details: serde_json::Value = match serde_json::from_str(&r.details_json) {
            // `rows` is keyvault's own record of the authority rows it wrote.
            Ok(serde_json::Value::Object(m)) if m.contains_key("rows") => {
                return Err(coded(
                    ErrorCode::InvalidRequest,
                    "details_json may not carry `rows`",
                ));
            }
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ if r.details_json.is_empty() => serde_json::Value::Object(Default::default()),
            _ => {
                return Err(coded(
                    ErrorCode::InvalidRequest,
                    "details_json must be a JSON object",
                ));
            }
        };
        let mut draft = cloister_audit::AuditDraft::new(actor(&r.actor), action, r.subject);
        draft.details = details;
        match self.vault.audit_untrusted(draft).await.map_err(status)? {
            Some(seq) => Ok(Response::new(pb::RecordEventResponse { seq })),
            None => Err(coded(
                ErrorCode::RateLimited,
                "keyvault's budget for audit entries the gateway causes is spent; \
                 the event is counted in keyvault's next audit.suppressed entry, not recorded",
            )),
        }
    }

    async fn write_key(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<pb::KeyView>, Status> {
        let r = req.into_inner();
        let result = match self.vault.authority().authorize_key_write(&r.signed).await {
            Ok((signer, w, digest)) => {
                self.write_key_for(&signer.to_string(), &w, &r.sealed, &digest)
                    .await
            }
            Err(d) => Err(VaultError::Denied(d)),
        };
        match result {
            Ok(view) => Ok(Response::new(view)),
            // Every refusal is audited, before and after the owner's signature checked out.
            Err(e) => {
                self.refusal("key_write", "keys", &e, "gateway").await;
                Err(status(e))
            }
        }
    }

    async fn use_key(
        &self,
        req: Request<pb::KeyUseRequest>,
    ) -> Result<Response<pb::KeyUseReply>, Status> {
        let r = req.into_inner();
        let authorized = self.vault.authority().authorize_key_use(&r.signed).await;
        let result = match authorized {
            Ok((signer, u, request_sha256)) => match self.key_use_message(&r, &u) {
                Ok(message) => {
                    self.use_key_for(&message, &signer.to_string(), &u, &request_sha256)
                        .await
                }
                Err(e) => Err(e),
            },
            Err(d) => Err(VaultError::Denied(d)),
        };
        match result {
            Ok(reply) => Ok(Response::new(reply)),
            // Every refusal is audited: one after the owner's signature checked out (a
            // swapped message, an unknown key) is evidence of a hostile relay too.
            Err(e) => {
                self.refusal("key_use", "keys", &e, "gateway").await;
                Err(status(e))
            }
        }
    }

    async fn export_key(
        &self,
        req: Request<pb::KeyExportRequest>,
    ) -> Result<Response<pb::KeyExportReply>, Status> {
        let r = req.into_inner();
        let result = match self
            .vault
            .authority()
            .authorize_key_export(&r.owner_signed, &r.admin_signed)
            .await
        {
            Ok((x, owner, admin, digest)) => {
                self.export_for(&x, &owner.to_string(), &admin.to_string(), &digest)
                    .await
            }
            Err(d) => Err(VaultError::Denied(d)),
        };
        match result {
            Ok(reply) => Ok(Response::new(reply)),
            Err(e) => {
                self.refusal("key_export", "keys", &e, "gateway").await;
                Err(status(e))
            }
        }
    }

    async fn list_keys(
        &self,
        req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let r = req.into_inner();
        let f = self.registered_function(&r.function_id).await?;
        let keys = self.vault.list_keys(&r.function_id).await.map_err(status)?;
        let mut views = Vec::with_capacity(keys.len());
        for k in keys {
            views.push(
                self.key_view(&f.function_id, &f.name, k, None)
                    .await
                    .map_err(status)?,
            );
        }
        Ok(Response::new(pb::ListKeysResponse { keys: views }))
    }

    async fn list_key_versions(
        &self,
        req: Request<pb::KeyVersionsRequest>,
    ) -> Result<Response<pb::KeyVersionsResponse>, Status> {
        let r = req.into_inner();
        let name = cloister_types::KeyName::parse(&r.name)
            .map_err(|e| coded(ErrorCode::InvalidRequest, e.to_string()))?;
        let f = self.registered_function(&r.function_id).await?;
        let versions = self
            .vault
            .key_versions(&f.function_id, &name)
            .await
            .map_err(status)?
            .into_iter()
            .map(|k| {
                let public_key = k.public_key.unwrap_or_default();
                let message = cloister_types::binding::key_version_message(
                    &f.function_id,
                    &f.name,
                    &k.name,
                    k.algorithm.as_str(),
                    k.version,
                    &public_key,
                    k.imported,
                );
                pb::KeyVersionView {
                    version: k.version,
                    algorithm: k.algorithm.as_str().to_owned(),
                    public_key,
                    imported: k.imported,
                    keyvault_signature: self.vault.sign_key_version(&message).to_vec(),
                }
            })
            .collect();
        Ok(Response::new(pb::KeyVersionsResponse {
            function: f.name.clone(),
            versions,
        }))
    }

    async fn register_manifest(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<RegisterManifestResponse>, Status> {
        let r = req.into_inner();
        // Confidential code is opened (and checked against the manifest's hash) before the
        // manifest is registered, and stored sealed under the function's code key after.
        let code = match self.confidential_code(&r) {
            Ok(c) => c,
            Err(e) => {
                self.refusal("deploy", "manifest", &e, "gateway").await;
                return Err(status(e));
            }
        };
        match self.vault.authority().register_manifest(&r.signed).await {
            Ok(reg) => {
                let stored_code = match &code {
                    Some(c) => self
                        .vault
                        .store_code(
                            &reg.function.function_id,
                            reg.manifest.version,
                            &reg.manifest.manifest.code_hash,
                            c,
                        )
                        .map_err(status)?,
                    None => Vec::new(),
                };
                Ok(Response::new(RegisterManifestResponse {
                    stored_code,
                    function_id: reg.function.function_id,
                    version: reg.manifest.version,
                    manifest_digest: reg.manifest.digest.clone(),
                    owners: reg
                        .function
                        .owners
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    active: reg.function.active,
                    signer: reg.manifest.signer.to_string(),
                    unchanged: reg.unchanged,
                }))
            }
            Err(d) => {
                let e = VaultError::Denied(d);
                self.refusal("deploy", "manifest", &e, "gateway").await;
                Err(status(e))
            }
        }
    }

    async fn grant_identity(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<GrantIdentityResponse>, Status> {
        let r = req.into_inner();
        match self.vault.authority().grant_identity(&r.signed).await {
            Ok(id) => Ok(Response::new(GrantIdentityResponse {
                identity_id: id.to_string(),
            })),
            Err(d) => {
                let e = VaultError::Denied(d);
                self.refusal("identity_grant", "registry", &e, "gateway")
                    .await;
                Err(status(e))
            }
        }
    }

    async fn activate(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<ActivateResponse>, Status> {
        let r = req.into_inner();
        match self.vault.authority().activate(&r.signed).await {
            Ok(f) => Ok(Response::new(ActivateResponse {
                function_id: f.function_id,
                active: f.active,
            })),
            Err(d) => {
                let e = VaultError::Denied(d);
                self.refusal("activate", "function", &e, "gateway").await;
                Err(status(e))
            }
        }
    }

    async fn change_registry(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<pb::ChangeRegistryResponse>, Status> {
        let r = req.into_inner();
        match self.vault.authority().change_registry(&r.signed).await {
            Ok(o) => Ok(Response::new(pb::ChangeRegistryResponse {
                identity_id: o.identity_id.map(|i| i.to_string()).unwrap_or_default(),
                rotated_to: o.rotated_to.map(|i| i.to_string()).unwrap_or_default(),
                revoked: o.revoked,
                owners: o
                    .owners
                    .into_iter()
                    .map(|(function_id, owners)| pb::FunctionOwners {
                        function_id,
                        owners: owners.iter().map(ToString::to_string).collect(),
                    })
                    .collect(),
                distrusted_versions: o.distrusted_versions,
                policy_version: o.policy_version.unwrap_or(0),
            })),
            Err(d) => {
                let e = VaultError::Denied(d);
                self.refusal("registry_change", "registry", &e, "gateway")
                    .await;
                Err(status(e))
            }
        }
    }

    async fn get_manifest(
        &self,
        req: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::GetManifestResponse>, Status> {
        let r = req.into_inner();
        let a = self.vault.authority();
        let function = if r.function_id.is_empty() {
            a.function_by_name(&r.name).await
        } else {
            a.function(&r.function_id).await
        }
        .map_err(|d| status(VaultError::Denied(d)))?;
        let Some(f) = function else {
            return Err(coded(
                ErrorCode::FunctionNotFound,
                if r.function_id.is_empty() {
                    format!("no function is named {:?}", r.name)
                } else {
                    format!("no function {}", r.function_id)
                },
            ));
        };
        let version = if r.version == 0 {
            f.latest_version
        } else {
            r.version
        };
        match a.signed_manifest(&f.function_id, version).await {
            Ok(Some(signed)) => Ok(Response::new(pb::GetManifestResponse {
                signed,
                function_id: f.function_id.clone(),
                version,
            })),
            Ok(None) => Err(coded(
                ErrorCode::FunctionNotFound,
                format!(
                    "no manifest for function {} version {version}",
                    f.function_id
                ),
            )),
            Err(d) => Err(status(VaultError::Denied(d))),
        }
    }

    async fn get_registry(
        &self,
        _req: Request<pb::GetRegistryRequest>,
    ) -> Result<Response<pb::GetRegistryResponse>, Status> {
        let identities = self
            .vault
            .authority()
            .registry()
            .into_iter()
            .map(|(id, r)| pb::IdentityEntry {
                id: id.to_string(),
                public_key: r.public_key,
                role: r.role.as_str().to_owned(),
                label: r.label,
                revoked: r.revoked,
                compromised: r.compromised,
                rotated_to: r.rotated_to.map(|i| i.to_string()).unwrap_or_default(),
                expires: r.expires.unwrap_or(0),
            })
            .collect();
        let a = self.vault.authority();
        let executor_policy = a.executor_policy().map(|p| pb::ExecutorPolicy {
            version: p.version,
            policy: p.policy,
            measurements: a.executor_measurements(),
            set_by: p.set_by,
        });
        Ok(Response::new(pb::GetRegistryResponse {
            identities,
            executor_policy,
        }))
    }
}

/// A key algorithm by name, or `invalid_request`.
fn parse_algorithm(name: &str) -> Result<cloister_crypto::keys::KeyAlgorithm, VaultError> {
    cloister_crypto::keys::KeyAlgorithm::parse(name).ok_or_else(|| {
        VaultError::Invalid(format!(
            "unknown key algorithm {name:?}: use ed25519, ecdsa-p256, ecdsa-secp256k1 or \
             hmac-sha256"
        ))
    })
}
