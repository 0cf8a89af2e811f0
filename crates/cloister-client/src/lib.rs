//! A small typed client of the Cloister HTTP API, used by the CLI, the benchmark and tests.
//!
//! One [`Client`] holds one keep-alive HTTP/1.1 connection and reconnects when it drops.

pub mod attestation;
pub mod audit;
mod conn;
pub mod evidence;
pub mod keys;
pub mod manifest;
pub mod receipt;
pub mod registry;
pub mod sealed;
pub mod signing;
pub mod trust;

use bytes::Bytes;
use cloister_types::ApiError;
use cloister_types::wire::{
    DeployRequest, FunctionInfo, FunctionList, InvokeResponse, TokenCreateRequest, TokenCreated,
    TokenList,
};
use hyper::Method;
use serde::de::DeserializeOwned;

pub use conn::Endpoint;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a documented error.
    #[error("{} (HTTP {status}): {}", .error.code, .error.message)]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body.
        error: ApiError,
    },
    /// The URL is not usable.
    #[error("invalid URL {0:?}: {1}")]
    Url(String, String),
    /// The server could not be reached or the connection broke.
    #[error("cannot reach {url}: {message}")]
    Transport {
        /// Server URL.
        url: String,
        /// Cause.
        message: String,
    },
    /// The server answered something that is not the documented shape.
    #[error("unexpected response (HTTP {status}): {message}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        message: String,
    },
    /// A request could not be signed.
    #[error("cannot sign the request: {0}")]
    Signing(String),
    /// A sealed call's answer could not be opened or trusted.
    #[error(transparent)]
    Sealed(#[from] sealed::SealedError),
    /// What the gateway relayed does not check out against keyvault's evidence.
    #[error("not trusted: {0}")]
    Untrusted(String),
    /// A receipt did not check out.
    #[error(transparent)]
    Receipt(#[from] receipt::ReceiptError),
    /// A sealed call's function failed; the details were sealed for this caller.
    #[error("{code} (execution {execution_id}): {message}")]
    FunctionFailed {
        /// The verified receipt, when one was asked for.
        receipt: Option<Box<(cloister_types::receipt::Receipt, receipt::VerifiedReceipt)>>,
        /// Public error code (HTTP 422 family).
        code: cloister_types::ErrorCode,
        /// The function's message.
        message: String,
        /// JavaScript stack, when there is one.
        stack: Option<String>,
        /// Log lines it wrote.
        logs: Vec<String>,
        /// Execution id.
        execution_id: String,
    },
}

impl ClientError {
    /// The API error code, if the server sent one.
    pub fn code(&self) -> Option<cloister_types::ErrorCode> {
        match self {
            ClientError::Api { error, .. } => Some(error.code),
            ClientError::FunctionFailed { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A raw response: status and body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
    /// Response headers.
    pub headers: hyper::HeaderMap,
}

/// Typed client of one Cloister server.
pub struct Client {
    conn: conn::Connection,
    token: Option<String>,
    signer: Option<signing::Signer>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Client")
            .field("url", &self.conn.endpoint().url())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the server at `url` (`http://host:port`), authenticating with `token`.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, ClientError> {
        Ok(Self {
            conn: conn::Connection::new(Endpoint::parse(url)?),
            token,
            signer: None,
        })
    }

    /// Signs deploys and secret writes as `identity` from now on (see [`signing`]).
    /// `platform` is keyvault's instance key from a verified bundle; `None` takes it from the
    /// bundle unverified (only a real keyvault with that key accepts what is signed).
    pub fn with_identity(
        mut self,
        identity: std::sync::Arc<cloister_authority::Identity>,
        platform: Option<String>,
    ) -> Self {
        self.signer = Some(signing::Signer { identity, platform });
        self
    }

    /// Binds what this client signs from now on to `platform`: keyvault's instance key from a
    /// bundle the caller verified. Without a signer, nothing changes.
    pub fn bind_platform(&mut self, platform: String) {
        if let Some(s) = self.signer.as_mut() {
            s.platform = Some(platform);
        }
    }

    /// Whether this client signs requests (it was given an identity).
    pub fn signs(&self) -> bool {
        self.signer.is_some()
    }

    /// keyvault's instance key signed requests are bound to (fetched once if not given).
    async fn platform(&mut self) -> Result<String, ClientError> {
        if let Some(p) = self.signer.as_ref().and_then(|s| s.platform.clone()) {
            return Ok(p);
        }
        let p = self.attestation().await?.keyvault.audit_public_key;
        if let Some(s) = self.signer.as_mut() {
            s.platform = Some(p.clone());
        }
        Ok(p)
    }

    /// Sends one request and returns status and body, whatever the status.
    pub async fn raw(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<RawResponse, ClientError> {
        self.conn
            .send(method, path, self.token.as_deref(), body, &[])
            .await
    }

    /// Like [`Client::raw`] with extra request headers.
    pub async fn raw_with_headers(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<RawResponse, ClientError> {
        self.conn
            .send(method, path, self.token.as_deref(), body, headers)
            .await
    }

    async fn call<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T, ClientError> {
        let resp = self.raw(method, path, body).await?;
        decode(resp)
    }

    async fn call_empty(&mut self, method: Method, path: &str) -> Result<(), ClientError> {
        let resp = self.raw(method, path, None).await?;
        if (200..300).contains(&resp.status) {
            Ok(())
        } else {
            Err(error_of(resp))
        }
    }

    /// `GET /healthz`.
    pub async fn health(&mut self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, "/healthz", None).await
    }

    /// `POST /v1/functions`. With an identity (and no manifest in `req`), signs the manifest
    /// first: for an existing name it names the function id and latest manifest digest the
    /// server reports (keyvault refuses them if they are not its own).
    pub async fn deploy(&mut self, req: &DeployRequest) -> Result<FunctionInfo, ClientError> {
        if req.manifest.is_none() && self.signer.is_some() {
            let existing = self.previous(&req.name).await?;
            let platform = self.platform().await?;
            let mut signed_req = req.clone();
            if let Some(s) = &self.signer {
                signed_req.manifest = Some(signing::sign_deploy(
                    &s.identity,
                    &platform,
                    req,
                    existing.as_ref(),
                )?);
            }
            return self
                .call(Method::POST, "/v1/functions", Some(to_json(&signed_req)))
                .await;
        }
        self.call(Method::POST, "/v1/functions", Some(to_json(req)))
            .await
    }

    /// `POST /v1/functions` with confidential code: `req.code` (plaintext) is sealed to
    /// fleet key `key` (HPKE info binding the name and the code's hash) and sent only sealed;
    /// the signed manifest says `confidential` and names the plaintext's hash. Needs an
    /// identity.
    pub async fn deploy_confidential(
        &mut self,
        req: &DeployRequest,
        key: &attestation::TrustedFleetKey,
    ) -> Result<FunctionInfo, ClientError> {
        use base64::Engine as _;
        let Some(s) = &self.signer else {
            return Err(ClientError::Signing(
                "confidential deploys are signed: no identity".into(),
            ));
        };
        let identity = s.identity.clone();
        let key_id = hex::encode(key.key_id);
        let existing = self.previous(&req.name).await?;
        let platform = self.platform().await?;
        // The manifest is signed first (it says `confidential` because `sealed_code` is set,
        // and names the plaintext's hash); the code is then sealed for exactly that manifest.
        let mut sealed_req = req.clone();
        sealed_req.sealed_code = Some(cloister_types::sealed::SealedCode {
            suite: cloister_types::sealed::SUITE_ID.to_owned(),
            key_id: key_id.clone(),
            ciphertext: String::new(),
        });
        let manifest = signing::sign_deploy(&identity, &platform, &sealed_req, existing.as_ref())?;
        let digest = {
            use sha2::Digest as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&manifest)
                .map_err(|e| ClientError::Signing(e.to_string()))?;
            hex::encode(sha2::Sha256::digest(bytes))
        };
        let info =
            cloister_types::sealed::code_info(cloister_types::sealed::SUITE_ID, &key_id, &digest);
        let ct = key
            .public
            .seal(&info, b"", req.code.as_bytes())
            .map_err(|e| ClientError::Signing(e.to_string()))?;
        sealed_req.sealed_code = Some(cloister_types::sealed::SealedCode {
            suite: cloister_types::sealed::SUITE_ID.to_owned(),
            key_id,
            ciphertext: base64::engine::general_purpose::STANDARD.encode(ct),
        });
        sealed_req.manifest = Some(manifest);
        // The plaintext never leaves this process.
        sealed_req.code = String::new();
        self.call(Method::POST, "/v1/functions", Some(to_json(&sealed_req)))
            .await
    }

    /// What a deploy of `name` names as the version before it: the gateway's latest version,
    /// else (a function deleted at the gateway, whose name keyvault keeps bound to it, so
    /// that its owners can deploy it again) the latest manifest keyvault holds for the name;
    /// `None` for a new name. keyvault checks whatever this says against its own record.
    pub async fn previous(&mut self, name: &str) -> Result<Option<signing::Previous>, ClientError> {
        use base64::Engine as _;
        match self.show(name, None).await {
            Ok(info) => return Ok(Some(signing::Previous::from(&info))),
            Err(ClientError::Api {
                status: 404 | 400, ..
            }) => {}
            Err(e) => return Err(e),
        }
        match self.signed_manifest(name, None).await {
            Ok(m) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&m.manifest)
                    .map_err(|e| ClientError::Signing(format!("the relayed manifest: {e}")))?;
                Ok(Some(signing::Previous {
                    function_id: m.function_id,
                    manifest_digest: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
                }))
            }
            Err(ClientError::Api {
                status: 404 | 400, ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/functions`.
    pub async fn list(&mut self) -> Result<FunctionList, ClientError> {
        self.call(Method::GET, "/v1/functions", None).await
    }

    /// `GET /v1/functions/{name}[?version=N]`.
    pub async fn show(
        &mut self,
        name: &str,
        version: Option<u32>,
    ) -> Result<FunctionInfo, ClientError> {
        let path = match version {
            Some(v) => format!("/v1/functions/{}?version={v}", seg(name)),
            None => format!("/v1/functions/{}", seg(name)),
        };
        self.call(Method::GET, &path, None).await
    }

    /// `DELETE /v1/functions/{name}`.
    pub async fn delete(&mut self, name: &str) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, &format!("/v1/functions/{}", seg(name)))
            .await
    }

    /// `POST /v1/functions/{name}/invoke` with `params` as JSON text.
    pub async fn invoke(
        &mut self,
        name: &str,
        params: &str,
        version: Option<u32>,
    ) -> Result<InvokeResponse, ClientError> {
        let body = invoke_body(params, version);
        self.call(
            Method::POST,
            &format!("/v1/functions/{}/invoke", seg(name)),
            Some(body),
        )
        .await
    }

    /// `POST /v1/functions/{name}/invoke` with parameters sealed by [`sealed::seal_call`];
    /// the answer is opened and checked (see [`sealed::SealedCall::open`]).
    pub async fn invoke_sealed(
        &mut self,
        name: &str,
        call: &sealed::SealedCall,
    ) -> Result<SealedAnswer, ClientError> {
        let body = to_json(&cloister_types::wire::InvokeRequest {
            params: None,
            version: None,
            sealed: Some(call.input.clone()),
            receipt_nonce: call.receipt.as_ref().map(|(n, _)| n.clone()),
            receipt_signer: call
                .receipt
                .as_ref()
                .and_then(|(_, t)| t.cache.known_signer(&t.root_fingerprint)),
        });
        let resp = self
            .raw(
                Method::POST,
                &format!("/v1/functions/{}/invoke", seg(name)),
                Some(body),
            )
            .await?;
        if resp.status == 422
            && let Some(err) = ApiError::from_body(&resp.body)
            && let Ok(d) = serde_json::from_value::<cloister_types::sealed::SealedFailureDetails>(
                err.details.clone(),
            )
        {
            if d.request_id != call.input.request_id {
                return Err(sealed::SealedError::Tampered.into());
            }
            let opened = call.open(&d.execution_id, err.code.as_str(), &d.sealed)?;
            let verified = call.check_receipt(
                d.receipt.as_ref(),
                &d.execution_id,
                err.code.as_str(),
                &d.sealed,
            )?;
            let receipt = d
                .receipt
                .zip(verified)
                .map(|(r, v)| Box::new((v.complete(r), v)));
            return match opened.result {
                Err((code, f)) => Err(ClientError::FunctionFailed {
                    receipt,
                    code,
                    message: f.message,
                    stack: f.stack,
                    logs: opened.logs,
                    execution_id: d.execution_id,
                }),
                Ok(_) => {
                    Err(sealed::SealedError::Malformed("a result under an error".into()).into())
                }
            };
        }
        // A failure of the function comes back sealed: one shown without a sealed answer is
        // the gateway's word, not the executor's.
        if let Some(err) = ApiError::from_body(&resp.body)
            && cloister_types::sealed::is_function_failure(err.code)
        {
            return Err(sealed::SealedError::Malformed(format!(
                "a `{}` failure without a sealed answer (not from the executor)",
                err.code
            ))
            .into());
        }
        let r: cloister_types::sealed::SealedInvokeResponse = decode(resp)?;
        if r.request_id != call.input.request_id {
            return Err(sealed::SealedError::Tampered.into());
        }
        let opened = call.open(&r.execution_id, &r.outcome, &r.sealed)?;
        let verified =
            call.check_receipt(r.receipt.as_ref(), &r.execution_id, &r.outcome, &r.sealed)?;
        match opened.result {
            Ok(result) => Ok(SealedAnswer {
                receipt: r.receipt.zip(verified).map(|(r, v)| (v.complete(r), v)),
                result,
                logs: opened.logs,
                execution_id: r.execution_id,
                // The executor refused any other version or code than sealed for: report
                // those, not the gateway's fields.
                version: call.input.version,
                code_hash: call.input.code_hash.clone(),
                duration_ms: r.duration_ms,
            }),
            Err(_) => {
                Err(sealed::SealedError::Malformed("an error under outcome ok".into()).into())
            }
        }
    }

    /// `POST /v1/functions/{name}/invoke` (plain) asking for a receipt, verified against
    /// `trust` and matched to this call (its params text, result text, execution id).
    pub async fn invoke_with_receipt(
        &mut self,
        name: &str,
        params: &str,
        version: Option<u32>,
        trust: &receipt::ReceiptTrust,
    ) -> Result<(InvokeResponse, receipt::VerifiedReceipt), ClientError> {
        use cloister_types::receipt::sha256_hex;
        let nonce = hex::encode(
            cloister_crypto::random_bytes::<32>()
                .map_err(|e| ClientError::Signing(e.to_string()))?,
        );
        let body = to_json(&cloister_types::wire::InvokeRequest {
            params: Some(
                serde_json::value::RawValue::from_string(params.to_owned()).map_err(|e| {
                    ClientError::Unexpected {
                        status: 0,
                        message: format!("params are not JSON: {e}"),
                    }
                })?,
            ),
            version,
            sealed: None,
            receipt_nonce: Some(nonce.clone()),
            receipt_signer: trust.cache.known_signer(&trust.root_fingerprint),
        });
        let resp: InvokeResponse = self
            .call(
                Method::POST,
                &format!("/v1/functions/{}/invoke", seg(name)),
                Some(body),
            )
            .await?;
        let r = resp
            .receipt
            .as_ref()
            .ok_or(receipt::ReceiptError::Missing)?;
        let v = receipt::verify_receipt(r, trust)?;
        let b = &v.body;
        // What the gateway says ran must be what the executor signed, and what was asked.
        if b.version != resp.version || version.is_some_and(|want| want != b.version) {
            return Err(receipt::ReceiptError::NotThisCall { field: "version" }.into());
        }
        if b.code_hash != resp.code_hash {
            return Err(receipt::ReceiptError::NotThisCall { field: "code hash" }.into());
        }
        // The gateway relays the params' JSON text without surrounding whitespace.
        let sent = params.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
        v.check_call(&receipt::CallFacts {
            nonce: &nonce,
            input_sha256: sha256_hex(sent.as_bytes()),
            output_sha256: sha256_hex(resp.result.get().as_bytes()),
            outcome: cloister_types::sealed::OUTCOME_OK,
            execution_id: &resp.execution_id,
            sealed: None,
        })?;
        // Kept whole: the evidence left out of the wire is filled back in.
        let mut resp = resp;
        resp.receipt = resp.receipt.take().map(|r| v.complete(r));
        Ok((resp, v))
    }

    /// `GET /v1/functions/{name}/invocations?after=SEQ&limit=N`: the function's recent
    /// invocations as the gateway kept them, oldest first.
    pub async fn invocations(
        &mut self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<cloister_types::wire::InvocationHistory, ClientError> {
        self.call(
            Method::GET,
            &format!(
                "/v1/functions/{}/invocations?after={after}&limit={limit}",
                seg(name)
            ),
            None,
        )
        .await
    }

    /// `GET /v1/functions/{name}/manifest`: the owner-signed manifest of a version, as
    /// relayed (check it with [`manifest::verify_manifest`]).
    pub async fn signed_manifest(
        &mut self,
        name: &str,
        version: Option<u32>,
    ) -> Result<cloister_types::wire::SignedManifest, ClientError> {
        let path = match version {
            Some(v) => format!("/v1/functions/{}/manifest?version={v}", seg(name)),
            None => format!("/v1/functions/{}/manifest", seg(name)),
        };
        self.call(Method::GET, &path, None).await
    }

    /// The target a sealed call to `name` (`version`, default latest) should be sealed for:
    /// the registry is checked against `kv`, then the version's manifest against the
    /// registry.
    pub async fn verified_target(
        &mut self,
        kv: &attestation::TrustedKeyvault,
        name: &str,
        version: Option<u32>,
    ) -> Result<manifest::VerifiedManifest, ClientError> {
        let view = self.registry().await?;
        registry::check(&view, kv).map_err(|e| ClientError::Untrusted(e.to_string()))?;
        let signed = self.signed_manifest(name, version).await?;
        if version.is_some_and(|v| v != signed.version) {
            return Err(ClientError::Untrusted(format!(
                "asked for version {:?}, the gateway sent version {}'s manifest",
                version, signed.version
            )));
        }
        manifest::verify_manifest(&signed, &view, &kv.audit_key.to_string(), name)
            .map_err(|e| ClientError::Untrusted(e.to_string()))
    }

    /// `POST /v1/tokens`.
    pub async fn create_token(
        &mut self,
        req: &TokenCreateRequest,
    ) -> Result<TokenCreated, ClientError> {
        self.call(Method::POST, "/v1/tokens", Some(to_json(req)))
            .await
    }

    /// `GET /v1/tokens`.
    pub async fn list_tokens(&mut self) -> Result<TokenList, ClientError> {
        self.call(Method::GET, "/v1/tokens", None).await
    }

    /// `DELETE /v1/tokens/{id}`.
    pub async fn revoke_token(&mut self, id: &str) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, &format!("/v1/tokens/{}", seg(id)))
            .await
    }

    /// Any JSON call: `body` is sent as JSON, the answer decoded as JSON (errors as [`ClientError::Api`]).
    pub async fn json(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let resp = self.raw(method, path, body.map(to_json)).await?;
        if resp.status == 204 {
            return Ok(serde_json::Value::Null);
        }
        decode(resp)
    }

    /// `GET /v1/attestation` (unverified: check it with [`attestation::verify_bundle`]).
    pub async fn attestation(&mut self) -> Result<attestation::Bundle, ClientError> {
        self.call(Method::GET, "/v1/attestation", None).await
    }

    /// `PUT /v1/secrets/{path}` (or `POST …:rotate`) with a value already sealed to keyvault.
    pub async fn put_secret(
        &mut self,
        path: &cloister_types::SecretPath,
        sealed: &[u8],
        rotate: bool,
    ) -> Result<serde_json::Value, ClientError> {
        use base64::Engine as _;
        let mut body = cloister_types::wire::SecretPutBody {
            sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
            signed: None,
        };
        if self.signer.is_some() {
            let platform = self.platform().await?;
            let op = if rotate {
                cloister_authority::ops::SecretOp::Rotate
            } else {
                cloister_authority::ops::SecretOp::Put
            };
            if let Some(s) = &self.signer {
                let signed = signing::sign_secret_write(&s.identity, &platform, path, op, sealed)?;
                body.signed = Some(base64::engine::general_purpose::STANDARD.encode(signed));
            }
        }
        let (method, url) = if rotate {
            (Method::POST, format!("/v1/secrets/{path}:rotate"))
        } else {
            (Method::PUT, format!("/v1/secrets/{path}"))
        };
        let resp = self.raw(method, &url, Some(to_json(&body))).await?;
        decode(resp)
    }

    /// `GET /v1/functions/{name}/versions`: every version and the current one.
    pub async fn versions(
        &mut self,
        name: &str,
    ) -> Result<cloister_types::wire::FunctionVersions, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/functions/{}/versions", seg(name)),
            None,
        )
        .await
    }

    /// `PUT /v1/functions/{name}/current`: the version that runs when none is asked for
    /// (`None`: the latest).
    pub async fn set_current(
        &mut self,
        name: &str,
        version: Option<u32>,
    ) -> Result<cloister_types::wire::FunctionVersions, ClientError> {
        let body = to_json(&cloister_types::wire::SetCurrentVersion { version });
        self.call(
            Method::PUT,
            &format!("/v1/functions/{}/current", seg(name)),
            Some(body),
        )
        .await
    }

    /// `GET /v1/status`: the gateway's release and its view of the executor (its word).
    pub async fn status(&mut self) -> Result<cloister_types::wire::PlatformStatus, ClientError> {
        self.call(Method::GET, "/v1/status", None).await
    }

    /// `GET /v1/audit?after=N&limit=L`: a page of the audit log with keyvault's checkpoints
    /// in range (admin).
    pub async fn audit_page(
        &mut self,
        after: u64,
        limit: u32,
    ) -> Result<cloister_audit::AuditPage, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/audit?after={after}&limit={limit}"),
            None,
        )
        .await
    }

    /// `GET /v1/secrets?prefix=...`: metadata of the secrets under `prefix`.
    pub async fn list_secrets(
        &mut self,
        prefix: &str,
    ) -> Result<cloister_types::wire::SecretList, ClientError> {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("prefix", prefix)
            .finish();
        self.call(Method::GET, &format!("/v1/secrets?{q}"), None)
            .await
    }

    /// `DELETE /v1/secrets/{path}`, signed by this client's identity when it has one.
    pub async fn delete_secret(
        &mut self,
        path: &cloister_types::SecretPath,
    ) -> Result<(), ClientError> {
        use base64::Engine as _;
        let mut header = None;
        if self.signer.is_some() {
            let platform = self.platform().await?;
            if let Some(s) = &self.signer {
                let signed = signing::sign_secret_write(
                    &s.identity,
                    &platform,
                    path,
                    cloister_authority::ops::SecretOp::Delete,
                    &[],
                )?;
                header = Some(base64::engine::general_purpose::STANDARD.encode(signed));
            }
        }
        let headers: Vec<(&str, &str)> = header
            .as_deref()
            .map(|h| vec![(signing::SIGNED_HEADER, h)])
            .unwrap_or_default();
        let resp = self
            .raw_with_headers(
                Method::DELETE,
                &format!("/v1/secrets/{path}"),
                None,
                &headers,
            )
            .await?;
        if (200..300).contains(&resp.status) {
            Ok(())
        } else {
            Err(error_of(resp))
        }
    }

    /// Relays an admin-signed identity grant (`POST /v1/identities`).
    pub async fn grant_identity(
        &mut self,
        public_key: &cloister_crypto::VerifyingKey,
        role: cloister_authority::ops::IdentityRole,
        label: &str,
        expires: Option<u64>,
    ) -> Result<cloister_types::wire::IdentityGranted, ClientError> {
        let body = cloister_authority::ops::IdentityGrant {
            public_key: public_key.to_string(),
            role,
            label: label.to_owned(),
            expires,
        };
        self.relay_signed("/v1/identities", &body, "an admin identity is needed")
            .await
    }

    /// Relays a signed registry change (`POST /v1/registry`): rotation (signed by the key
    /// being replaced), revocation (admin or self) or owner change (owner or admin).
    pub async fn change_registry(
        &mut self,
        change: &cloister_authority::ops::RegistryChange,
    ) -> Result<cloister_types::wire::RegistryChanged, ClientError> {
        self.relay_signed("/v1/registry", change, "an identity is needed")
            .await
    }

    /// Creates or rotates one of a function's keys in keyvault (owner-signed; keyvault makes
    /// the key and keeps its private half).
    pub async fn write_key(
        &mut self,
        change: &cloister_authority::ops::KeyWrite,
    ) -> Result<cloister_types::wire::KeyInfo, ClientError> {
        self.relay_signed(
            "/v1/keys",
            change,
            "an owner's identity is needed to create or rotate keys",
        )
        .await
    }

    /// Signs with, or checks a signature against, one of a function's keys
    /// (`cloister/key-use/v1`, owner-signed; `usage.message_sha256` must be `message`'s).
    /// Returns keyvault's result and the SHA-256 of the signed request, which keyvault's
    /// signature over the result binds: check it with [`keys::verify_use`] before trusting
    /// the result.
    pub async fn use_key(
        &mut self,
        usage: &cloister_authority::ops::KeyUse,
        message: KeyUseMessage<'_>,
    ) -> Result<(cloister_types::wire::KeyUseResult, [u8; 32]), ClientError> {
        use base64::Engine as _;
        use sha2::Digest as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let signed = self
            .sign_body(usage, "an owner's identity is needed to use keys")
            .await?;
        let digest: [u8; 32] = sha2::Sha256::digest(
            b64.decode(&signed)
                .map_err(|_| ClientError::Signing("the signed request is not base64".into()))?,
        )
        .into();
        let req = match message {
            KeyUseMessage::Plain(m) => cloister_types::wire::KeyUseBody {
                signed,
                message: Some(b64.encode(m)),
                sealed: None,
            },
            KeyUseMessage::Sealed(m) => cloister_types::wire::KeyUseBody {
                signed,
                message: None,
                sealed: Some(b64.encode(m)),
            },
        };
        let r = self
            .call(Method::POST, "/v1/keys/use", Some(to_json(&req)))
            .await?;
        Ok((r, digest))
    }

    /// Imports a key made elsewhere (`KeyOp::Import`, owner-signed): `sealed` is its 32
    /// secret bytes sealed to keyvault's HPKE key with info
    /// `cloister_types::binding::key_import_info` (`change` binds its SHA-256).
    pub async fn import_key(
        &mut self,
        change: &cloister_authority::ops::KeyWrite,
        sealed: &[u8],
    ) -> Result<cloister_types::wire::KeyInfo, ClientError> {
        use base64::Engine as _;
        let req = cloister_types::wire::KeyWriteBody {
            signed: self
                .sign_body(change, "an owner's identity is needed to import keys")
                .await?,
            sealed: Some(base64::engine::general_purpose::STANDARD.encode(sealed)),
        };
        self.call(Method::POST, "/v1/keys", Some(to_json(&req)))
            .await
    }

    /// Exports an exportable key sealed to a recipient: `owner_signed` and `admin_signed` are
    /// the same `KeyExport` body signed (base64) by an owner and by an admin. Open the result
    /// with [`keys::open_export`].
    pub async fn export_key(
        &mut self,
        owner_signed: String,
        admin_signed: String,
    ) -> Result<(cloister_types::wire::KeyExported, [u8; 32]), ClientError> {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(
            base64::engine::general_purpose::STANDARD
                .decode(&owner_signed)
                .map_err(|_| {
                    ClientError::Signing("the owner's signed request is not base64".into())
                })?,
        )
        .into();
        let req = cloister_types::wire::KeyExportBody {
            owner_signed,
            admin_signed,
        };
        let out = self
            .call(Method::POST, "/v1/keys/export", Some(to_json(&req)))
            .await?;
        Ok((out, digest))
    }

    /// Like [`Client::write_key`] (or, with `sealed`, [`Client::import_key`]), and checks
    /// keyvault's answer with `audit_key` (from a verified bundle): its view of the key, and
    /// that the view answers exactly this request ([`keys::verify_write`]).
    pub async fn write_key_checked(
        &mut self,
        change: &cloister_authority::ops::KeyWrite,
        sealed: Option<&[u8]>,
        audit_key: &cloister_crypto::VerifyingKey,
    ) -> Result<cloister_types::wire::KeyInfo, ClientError> {
        use base64::Engine as _;
        use sha2::Digest as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let signed = self
            .sign_body(change, "an owner's identity is needed to change keys")
            .await?;
        let digest: [u8; 32] = sha2::Sha256::digest(
            b64.decode(&signed)
                .map_err(|_| ClientError::Signing("the signed request is not base64".into()))?,
        )
        .into();
        let req = cloister_types::wire::KeyWriteBody {
            signed,
            sealed: sealed.map(|s| b64.encode(s)),
        };
        let info: cloister_types::wire::KeyInfo = self
            .call(Method::POST, "/v1/keys", Some(to_json(&req)))
            .await?;
        keys::verify_write(&info, audit_key, &change.function, &digest)
            .map_err(|e| ClientError::Untrusted(e.to_string()))?;
        Ok(info)
    }

    /// The public facts of function `name`'s keys.
    pub async fn keys(&mut self, name: &str) -> Result<cloister_types::wire::KeyList, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/functions/{}/keys", seg(name)),
            None,
        )
        .await
    }

    /// Every version of key `key` of function `name`, oldest first (check each with
    /// [`keys::verify_version`]).
    pub async fn key_versions(
        &mut self,
        name: &str,
        key: &str,
    ) -> Result<cloister_types::wire::KeyVersions, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/functions/{}/keys/{}/versions", seg(name), seg(key)),
            None,
        )
        .await
    }

    /// Rotates this client's identity to `new` (signed by the current key, with `new`'s proof
    /// of possession); keep using the returned client with `new` afterwards.
    pub async fn rotate_identity(
        &mut self,
        new: &cloister_authority::Identity,
    ) -> Result<cloister_types::wire::RegistryChanged, ClientError> {
        let platform = self.platform().await?;
        let Some(s) = &self.signer else {
            return Err(ClientError::Signing(
                "the identity to rotate is needed".into(),
            ));
        };
        let change = cloister_authority::ops::RegistryChange::Rotate {
            new_public_key: new.public_key().to_string(),
            proof: new.rotation_proof(s.identity.id(), &platform),
        };
        self.change_registry(&change).await
    }

    /// keyvault's registry (`GET /v1/registry`), as relayed: check it with
    /// [`registry::check`] against a verified bundle before relying on it.
    pub async fn registry(&mut self) -> Result<cloister_types::wire::RegistryView, ClientError> {
        self.call(Method::GET, "/v1/registry", None).await
    }

    /// Relays an owner-signed activation (`active = true`) or deactivation of a version.
    pub async fn activate(
        &mut self,
        name: &str,
        function_id: &str,
        version: u32,
        active: bool,
    ) -> Result<cloister_types::wire::ActivationResult, ClientError> {
        let body = cloister_authority::ops::Activation {
            function_id: function_id.to_owned(),
            name: name.to_owned(),
            version,
            active,
            and_newer: false,
        };
        self.relay_signed("/v1/activations", &body, "an owner identity is needed")
            .await
    }

    /// An owner-signed deactivation of `version` and of every version above it that keyvault
    /// knows (not just those the gateway lists); `version` may be one past the latest.
    pub async fn deactivate_from(
        &mut self,
        name: &str,
        function_id: &str,
        version: u32,
    ) -> Result<cloister_types::wire::ActivationResult, ClientError> {
        let body = cloister_authority::ops::Activation {
            function_id: function_id.to_owned(),
            name: name.to_owned(),
            version,
            active: false,
            and_newer: true,
        };
        self.relay_signed("/v1/activations", &body, "an owner identity is needed")
            .await
    }

    /// Signs `body` with this client's identity for its platform and POSTs it to `path` as
    /// `{"signed": <base64>}`.
    async fn relay_signed<B: cloister_authority::Body, T: DeserializeOwned>(
        &mut self,
        path: &str,
        body: &B,
        who: &str,
    ) -> Result<T, ClientError> {
        let req = cloister_types::wire::SignedBody {
            signed: self.sign_body(body, who).await?,
        };
        self.call(Method::POST, path, Some(to_json(&req))).await
    }

    /// `body` signed by this client's identity for the platform it talks to, as base64 (what
    /// a `signed` or `manifest` field, or the `cloister-signed` header, carries); `who` says
    /// which identity is needed when there is none.
    pub async fn sign_body<B: cloister_authority::Body>(
        &mut self,
        body: &B,
        who: &str,
    ) -> Result<String, ClientError> {
        use base64::Engine as _;
        let platform = self.platform().await?;
        let Some(s) = &self.signer else {
            return Err(ClientError::Signing(who.to_owned()));
        };
        let signed = cloister_authority::sign(
            &s.identity,
            body,
            &cloister_authority::SignOptions::for_platform(&platform),
        )
        .map_err(|e| ClientError::Signing(e.to_string()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(signed))
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&mut self) -> Result<String, ClientError> {
        let resp = self.raw(Method::GET, "/metrics", None).await?;
        if resp.status != 200 {
            return Err(error_of(resp));
        }
        String::from_utf8(resp.body.to_vec()).map_err(|_| ClientError::Unexpected {
            status: 200,
            message: "metrics are not UTF-8".into(),
        })
    }
}

/// An opened answer to a sealed invocation.
#[derive(Debug)]
pub struct SealedAnswer {
    /// The receipt and what checked out about it, when one was asked for.
    pub receipt: Option<(cloister_types::receipt::Receipt, receipt::VerifiedReceipt)>,
    /// The function's result.
    pub result: Box<serde_json::value::RawValue>,
    /// Log lines it wrote.
    pub logs: Vec<String>,
    /// Execution id (bound into the sealed answer).
    pub execution_id: String,
    /// Version that ran (the one sealed for: the executor refuses any other).
    pub version: u32,
    /// Code hash that ran (the one sealed for).
    pub code_hash: String,
    /// Wall time in the executor, milliseconds.
    pub duration_ms: f64,
}

/// The JSON body of an invocation (`params` spliced in as given).
pub fn invoke_body(params: &str, version: Option<u32>) -> Bytes {
    match version {
        Some(v) => Bytes::from(format!("{{\"params\":{params},\"version\":{v}}}")),
        None => Bytes::from(format!("{{\"params\":{params}}}")),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// Percent-encodes a path segment (names are plain already; this keeps odd input harmless).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn error_of(resp: RawResponse) -> ClientError {
    match ApiError::from_body(&resp.body) {
        Some(error) => ClientError::Api {
            status: resp.status,
            error,
        },
        None => ClientError::Unexpected {
            status: resp.status,
            message: String::from_utf8_lossy(&resp.body)
                .chars()
                .take(200)
                .collect(),
        },
    }
}

fn decode<T: DeserializeOwned>(resp: RawResponse) -> Result<T, ClientError> {
    if !(200..300).contains(&resp.status) {
        return Err(error_of(resp));
    }
    serde_json::from_slice(&resp.body).map_err(|e| ClientError::Unexpected {
        status: resp.status,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("add-2"), "add-2");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn invoke_body_splices_params() {
        assert_eq!(
            &invoke_body("{\"a\":1}", None)[..],
            br#"{"params":{"a":1}}"#
        );
        assert_eq!(
            &invoke_body("[1]", Some(2))[..],
            br#"{"params":[1],"version":2}"#
        );
    }
}

/// The message of an owner's key use ([`Client::use_key`]), as it crosses the gateway.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum KeyUseMessage<'a> {
    /// In plain: the gateway reads it.
    Plain(&'a [u8]),
    /// Sealed to keyvault's HPKE key with info `cloister_types::binding::key_use_info`
    /// (function id, key name): the gateway relays it without reading it, though it sees the
    /// message's SHA-256 (bound by the signed request) and can confirm a guess.
    Sealed(&'a [u8]),
}
