//! `POST/GET/DELETE /v1/functions`: deploy, inspect and delete functions.

use std::time::Duration;

use base64::Engine as _;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use cloister_audit::{Action, AuditDraft};
use cloister_authority::manifest::Manifest;
use cloister_rpc::executor::ValidateRequest;
use cloister_rpc::keyvault::SignedRequest;
use cloister_store::NewVersion;
use cloister_types::wire::{DeployRequest, FunctionInfo, FunctionList};
use cloister_types::{
    DeclaredSecretsError, Entrypoint, Environment, ErrorCode, FunctionName, Role, SecretRef,
    ServerLimits, SourceName, code_hash,
};

use crate::auth::Caller;
use crate::body;
use crate::error::{HttpError, HttpResult};
use crate::functions::not_found;
use crate::keyvault::kv_error;
use crate::state::Shared;

/// Runtimes this build can run.
pub const RUNTIMES: &[&str] = &["javascript"];

/// Extra body allowance over the code limit for JSON escaping and the other fields (the
/// configuration appears twice: as `env` and inside the base64 manifest).
fn deploy_body_limit(limits: &ServerLimits) -> usize {
    limits
        .max_code_bytes
        .saturating_mul(2)
        .saturating_add(1024 * 1024)
}

/// Checks every field of a deploy request except compilation; returns the version to store.
pub fn check_deploy(limits: &ServerLimits, req: DeployRequest) -> HttpResult<NewVersion> {
    let invalid =
        |e: cloister_types::NameError| HttpError::new(ErrorCode::InvalidRequest, e.to_string());
    let name = FunctionName::parse(&req.name).map_err(invalid)?;
    if !RUNTIMES.contains(&req.runtime.as_str()) {
        return Err(HttpError::new(
            ErrorCode::InvalidRequest,
            format!(
                "unknown runtime {:?}; supported: {}",
                req.runtime,
                RUNTIMES.join(", ")
            ),
        ));
    }
    if req.code.len() > limits.max_code_bytes {
        return Err(HttpError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "code is {} bytes; the maximum is {}",
                req.code.len(),
                limits.max_code_bytes
            ),
        )
        .details(
            serde_json::json!({ "limitBytes": limits.max_code_bytes, "sizeBytes": req.code.len() }),
        ));
    }
    let entrypoint = match req.entrypoint.as_deref() {
        Some(e) => Entrypoint::parse(e).map_err(invalid)?,
        None => Entrypoint::default(),
    };
    let environment = match req.environment.as_deref() {
        Some(e) => Environment::parse(e).map_err(invalid)?,
        None => Environment::default(),
    };
    let required_secrets = SecretRef::parse_declared(&req.required_secrets).map_err(|e| {
        let code = match e {
            DeclaredSecretsError::TooMany { .. } => ErrorCode::InvalidRequest,
            _ => ErrorCode::InvalidSecretPath,
        };
        let details = match e {
            DeclaredSecretsError::TooMany { count } => serde_json::json!({
                "field": "requiredSecrets",
                "count": count,
                "max": cloister_types::MAX_DECLARED_SECRETS,
            }),
            _ => serde_json::Value::Null,
        };
        let err = HttpError::new(code, e.to_string());
        if details.is_null() {
            err
        } else {
            err.details(details)
        }
    })?;
    let limits = limits.resolve(req.limits)?;
    cloister_types::function_env::check_env(&req.env)
        .map_err(|e| HttpError::new(ErrorCode::InvalidRequest, e.to_string()))?;
    if let Some(n) = &req.source_name {
        SourceName::parse(n).map_err(invalid)?;
    }
    Ok(NewVersion {
        version: None,
        manifest_digest: String::new(),
        owners: Vec::new(),
        name: name.to_string(),
        new_function_id: uuid::Uuid::new_v4().to_string(),
        code_hash: code_hash(&req.code),
        code: req.code,
        runtime: req.runtime,
        entrypoint: entrypoint.to_string(),
        environment: environment.to_string(),
        required_secrets: required_secrets.iter().map(SecretRef::to_string).collect(),
        limits,
        env: req.env,
        source_name: req.source_name,
    })
}

/// Checks the shape of confidential code and takes the code hash from the signed manifest
/// (which must say `confidential`); `new.code` stays empty until keyvault stores the code.
fn confidential_code(
    limits: &ServerLimits,
    sc: cloister_types::sealed::SealedCode,
    manifest_b64: Option<&str>,
    new: &mut NewVersion,
) -> HttpResult<cloister_rpc::keyvault::SealedCode> {
    let invalid = |m: &str| HttpError::new(ErrorCode::InvalidRequest, m.to_owned());
    if !new.code.is_empty() {
        return Err(invalid(
            "confidential code comes only sealed: leave \"code\" empty",
        ));
    }
    let ciphertext = base64::engine::general_purpose::STANDARD
        .decode(&sc.ciphertext)
        .map_err(|_| invalid("\"sealedCode.ciphertext\" must be standard base64"))?;
    if ciphertext.len() > limits.max_code_bytes + 64 {
        return Err(HttpError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "sealed code is {} bytes; the maximum is {}",
                ciphertext.len(),
                limits.max_code_bytes
            ),
        ));
    }
    let bytes = manifest_b64
        .and_then(|m| base64::engine::general_purpose::STANDARD.decode(m).ok())
        .ok_or_else(|| invalid("confidential deploys carry a signed manifest"))?;
    let m = cloister_authority::request::inspect::<Manifest>(&bytes)
        .map_err(|e| invalid(&format!("manifest: {e}")))?
        .body;
    if !m.confidential {
        return Err(invalid(
            "sealed code needs a manifest that says confidential",
        ));
    }
    new.code_hash = m.code_hash;
    Ok(cloister_rpc::keyvault::SealedCode {
        suite: sc.suite,
        key_id: sc.key_id,
        ciphertext,
    })
}

/// `POST /v1/functions`.
pub async fn deploy(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<(StatusCode, Json<FunctionInfo>)> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Developer, "deploy functions")?;
    let result = deploy_inner(&s, &caller, &headers, body).await;
    s.metrics.deploy(match &result {
        Ok(_) => "ok",
        Err(e) => e.0.code.as_str(),
    });
    let info = result?;
    // keyvault audited the deploy when it registered the manifest (actor: the signer).
    let status = if info.unchanged {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(info)))
}

/// Decodes the deploy's manifest (without trusting it: keyvault verifies) and checks that the
/// request's fields are the ones it signs, so the gateway's record matches keyvault's.
/// The keys a deploy request declares, with their limits.
struct DeclaredKeys {
    names: Vec<String>,
    limits: std::collections::BTreeMap<String, cloister_types::KeyLimits>,
    /// The egress policy (checked here for a clear early error; keyvault decides).
    egress: Option<cloister_types::egress::Egress>,
}

fn check_manifest(
    b64: Option<&str>,
    new: &NewVersion,
    keys: &DeclaredKeys,
    known: Option<&FunctionInfo>,
) -> HttpResult<(Vec<u8>, String)> {
    use base64::Engine as _;
    let Some(b64) = b64 else {
        return Err(HttpError::new(
            ErrorCode::BadSignature,
            "deploys carry a manifest signed by the deployer's identity (`cloister identity \
             create`; the CLI and cloister-client sign transparently; see docs/MANIFESTS.md)",
        ));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| HttpError::new(ErrorCode::InvalidRequest, "\"manifest\" must be base64"))?;
    let inspected = cloister_authority::request::inspect::<Manifest>(&bytes)
        .map_err(|e| HttpError::new(e.code(), e.to_string()))?;
    let signer = inspected.signer_id.to_string();
    let m = inspected.body;
    let mismatch = |field: &str| {
        HttpError::new(
            ErrorCode::ManifestMismatch,
            format!("the request's {field} is not the one its signed manifest names"),
        )
    };
    if m.name != new.name {
        return Err(mismatch("name"));
    }
    if m.runtime != new.runtime {
        return Err(mismatch("runtime"));
    }
    if m.entrypoint != new.entrypoint {
        return Err(mismatch("entrypoint"));
    }
    if m.environment != new.environment {
        return Err(mismatch("environment"));
    }
    if m.code_hash != new.code_hash {
        return Err(mismatch("code hash"));
    }
    if m.secrets != new.required_secrets {
        return Err(mismatch("requiredSecrets"));
    }
    if m.limits.timeout_ms != new.limits.timeout_ms || m.limits.memory_mb != new.limits.memory_mb {
        return Err(mismatch("limits"));
    }
    if m.env != new.env {
        return Err(mismatch("env"));
    }
    if m.source_name != new.source_name {
        return Err(mismatch("sourceName"));
    }
    if m.keys != keys.names {
        return Err(mismatch("requiredKeys"));
    }
    if m.key_limits != keys.limits {
        return Err(mismatch("keyLimits"));
    }
    if m.egress != keys.egress {
        return Err(mismatch("egress"));
    }
    if let (Some(k), Some(id)) = (known, m.function_id.as_deref())
        && k.function_id != id
    {
        return Err(mismatch("function id"));
    }
    Ok((bytes, signer))
}

async fn deploy_inner(
    s: &Shared,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
) -> HttpResult<FunctionInfo> {
    let bytes = body::read_limited(headers, body, deploy_body_limit(&s.limits)).await?;
    // Decoding, validating and hashing up to a few MB: off the async workers when large.
    let limits = s.limits;
    let (manifest_b64, sealed_code, keys, mut new) = body::off_runtime(bytes.len(), move || {
        let mut req: DeployRequest = body::parse_json(&bytes)?;
        let manifest_b64 = req.manifest.take();
        let sealed_code = req.sealed_code.take();
        let keys = DeclaredKeys {
            names: std::mem::take(&mut req.required_keys),
            limits: std::mem::take(&mut req.key_limits),
            egress: req.egress.take(),
        };
        if let Some(e) = &keys.egress {
            let declared = cloister_types::SecretRef::parse_declared(&req.required_secrets)
                .map_err(|e| HttpError::new(ErrorCode::InvalidRequest, e.to_string()))?;
            let names: Vec<&str> = declared.iter().map(|r| r.name()).collect();
            e.check(&names)
                .map_err(|e| HttpError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        }
        cloister_types::KeyName::parse_declared(&keys.names)
            .map_err(|e| HttpError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        cloister_types::key_limits::check_key_limits(&keys.names, &keys.limits)
            .map_err(|e| HttpError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        Ok((manifest_b64, sealed_code, keys, check_deploy(&limits, req)?))
    })
    .await?;
    // Confidential code: the gateway never sees it; its hash is the signed manifest's.
    let sealed_code = match sealed_code {
        None => None,
        Some(sc) => Some(confidential_code(
            &s.limits,
            sc,
            manifest_b64.as_deref(),
            &mut new,
        )?),
    };
    let known = s.store.get_version(&new.name, None).await?;
    let (signed, signer) = check_manifest(manifest_b64.as_deref(), &new, &keys, known.as_ref())?;
    match &known {
        Some(k) => caller.require_owner(&k.name, &k.owners)?,
        // A new function is owned by its signer: a developer token relays only its own.
        None if caller.role != Role::Admin
            && caller.identity.as_deref() != Some(signer.as_str()) =>
        {
            return Err(HttpError::new(
                ErrorCode::Forbidden,
                "a developer token relays only manifests signed by its own identity",
            ));
        }
        None => {}
    }
    // Compile in a sandboxed worker: the gateway never evaluates function code itself (and
    // confidential code is opened only inside the executor).
    let check = ValidateRequest {
        code: new.code.clone(),
        entrypoint: new.entrypoint.clone(),
        timeout_ms: new.limits.timeout_ms,
        memory_mb: new.limits.memory_mb,
        sealed_code: sealed_code
            .as_ref()
            .map(|c| cloister_rpc::executor::ConfidentialCode {
                suite: c.suite.clone(),
                key_id: c.key_id.clone(),
                ciphertext: c.ciphertext.clone(),
                manifest_digest: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&signed)),
                code_hash: new.code_hash.clone(),
            }),
    };
    let verdict = s
        .executor
        .validate(
            check,
            Duration::from_millis(new.limits.timeout_ms) + Duration::from_secs(10),
        )
        .await?;
    if !verdict.ok {
        let mut details = serde_json::Map::new();
        let mut message = verdict.message;
        if let Some(l) = verdict.line {
            details.insert("line".into(), l.into());
            message.push_str(&format!(" (line {l}"));
            if let Some(c) = verdict.column {
                details.insert("column".into(), c.into());
                message.push_str(&format!(", column {c}"));
            }
            message.push(')');
        }
        return Err(HttpError::new(ErrorCode::InvalidCode, message).details(details.into()));
    }
    // keyvault verifies the owner's signature, binds the name, assigns id and version.
    let kv = s.keyvault.as_ref().ok_or_else(|| {
        HttpError::new(
            ErrorCode::Unavailable,
            "keyvault is not configured: deploys need it to register their manifest",
        )
    })?;
    let reg = kv
        .client()
        .register_manifest(kv.request(SignedRequest {
            signed,
            sealed_code: sealed_code.clone(),
            sealed: Vec::new(),
        }))
        .await
        .map_err(kv_error)?
        .into_inner();
    s.epochs.after_write().await;
    if sealed_code.is_some() {
        if reg.stored_code.is_empty() {
            return Err(HttpError::new(
                ErrorCode::Internal,
                "keyvault returned no stored code for a confidential manifest",
            ));
        }
        new.code = format!(
            "{}{}",
            cloister_types::sealed::STORED_CODE_PREFIX,
            base64::engine::general_purpose::STANDARD.encode(&reg.stored_code)
        );
    }
    // keyvault found the latest version already is this content (and may run): it stands.
    // The gateway's record of it, made current again (a rollback with --keep-newer pinned an
    // older one); without a record (the function was deleted here), one is made below.
    if reg.unchanged
        && let Some(info) = s.store.get_version(&new.name, Some(reg.version)).await?
        && info.function_id == reg.function_id
        && info.manifest_digest == reg.manifest_digest
        && info.code_hash == new.code_hash
    {
        let current = s.store.get_current(&new.name).await?;
        if current.is_some_and(|c| c.version != reg.version) {
            s.store.set_current_version(&new.name, None).await?;
        }
        if info.owners != reg.owners {
            s.store
                .set_function_owners(&reg.function_id, &reg.owners)
                .await?;
        }
        s.functions.invalidate(&new.name);
        return Ok(FunctionInfo {
            unchanged: true,
            owners: reg.owners,
            ..info
        });
    }
    new.new_function_id = reg.function_id.clone();
    new.version = Some(reg.version);
    new.manifest_digest = reg.manifest_digest;
    new.owners = reg.owners;
    let info = s.store.create_version(new).await?;
    if info.function_id != reg.function_id {
        tracing::error!(name = %info.name, gateway = %info.function_id, keyvault = %reg.function_id, "function id differs from keyvault's");
        return Err(HttpError::new(
            ErrorCode::Conflict,
            "the gateway's record of this name disagrees with keyvault's; delete and redeploy",
        ));
    }
    s.functions.invalidate(&info.name);
    tracing::info!(name = %info.name, version = info.version, code_hash = %info.code_hash, "deployed");
    // A record made again for what keyvault already had (the function was deleted here):
    // keyvault registered nothing.
    Ok(FunctionInfo {
        unchanged: reg.unchanged,
        ..info
    })
}

/// Maps a rejected path segment to `invalid_request`.
pub fn path_arg(p: Result<Path<String>, PathRejection>) -> HttpResult<String> {
    p.map(|Path(v)| v)
        .map_err(|e| HttpError::new(ErrorCode::InvalidRequest, e.body_text()))
}

/// Parses `version=N` from a query string.
pub fn version_query(q: Option<&str>) -> HttpResult<Option<u32>> {
    let mut version = None;
    for (k, v) in crate::query::pairs(q) {
        let (k, v) = (k.as_str(), v.as_str());
        match k {
            "version" => {
                let n = v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    HttpError::new(
                        ErrorCode::InvalidRequest,
                        format!("version must be a positive integer, got {v:?}"),
                    )
                })?;
                version = Some(n);
            }
            other => {
                return Err(HttpError::new(
                    ErrorCode::InvalidRequest,
                    format!("unknown query parameter {other:?}"),
                ));
            }
        }
    }
    Ok(version)
}

/// `GET /v1/functions`.
pub async fn list(State(s): State<Shared>, headers: HeaderMap) -> HttpResult<Json<FunctionList>> {
    let caller = s.auth.authenticate(&headers).await?;
    let mut functions = s.store.list_latest().await?;
    // A token scoped to some functions sees those only.
    functions.retain(|f| caller.require_function(&f.name).is_ok());
    Ok(Json(FunctionList { functions }))
}

/// `GET /v1/functions/{name}[?version=N]`.
pub async fn show(
    State(s): State<Shared>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> HttpResult<Json<FunctionInfo>> {
    let caller = s.auth.authenticate(&headers).await?;
    let name = path_arg(name)?;
    caller.require_function(&name)?;
    let version = version_query(q.as_deref())?;
    let info = s
        .store
        .get_version(&name, version)
        .await?
        .ok_or_else(|| not_found(&name, version))?;
    Ok(Json(info))
}

/// `DELETE /v1/functions/{name}`.
pub async fn delete(
    State(s): State<Shared>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> HttpResult<StatusCode> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Developer, "delete functions")?;
    let name = path_arg(name)?;
    let existing = s.store.get_version(&name, None).await?;
    if let Some(f) = &existing {
        caller.require_owner(&name, &f.owners)?;
    }
    let deleted = s.store.delete_function(&name).await?;
    if let Some(f) = &existing {
        s.history.forget(&f.function_id);
    }
    s.functions.invalidate(&name);
    if deleted {
        tracing::info!(%name, "deleted function");
        s.audit
            .record(AuditDraft::new(
                caller.token_id.clone(),
                Action::FunctionDelete,
                name.clone(),
            ))
            .await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name, None))
    }
}

/// `GET /v1/functions/{name}/invocations[?after=SEQ&limit=N]`: recent invocations of the
/// function's current id (see `history`), oldest first; its owners and admins.
pub async fn invocations(
    State(s): State<Shared>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> HttpResult<Json<cloister_types::wire::InvocationHistory>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Developer, "read invocation history")?;
    let name = path_arg(name)?;
    let (mut after, mut limit) = (0u64, 50usize);
    for (k, v) in crate::query::pairs(q.as_deref()) {
        let bad = |what: &str| {
            HttpError::new(
                ErrorCode::InvalidRequest,
                format!("{k} must be {what}, got {v:?}"),
            )
        };
        match k.as_str() {
            "after" => after = v.parse().map_err(|_| bad("a non-negative integer"))?,
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=crate::history::PER_FUNCTION).contains(n))
                    .ok_or_else(|| bad("1 to 200"))?;
            }
            _ => {
                return Err(HttpError::new(
                    ErrorCode::InvalidRequest,
                    format!("unknown query parameter {k:?}; use after=<seq>&limit=<n>"),
                ));
            }
        }
    }
    let f = s
        .store
        .get_version(&name, None)
        .await?
        .ok_or_else(|| not_found(&name, None))?;
    if caller.role != Role::Admin {
        caller.require_owner(&name, &f.owners)?;
    }
    Ok(Json(cloister_types::wire::InvocationHistory {
        invocations: s.history.list(&f.function_id, after, limit),
        retention_secs: crate::history::RETENTION.as_secs(),
    }))
}

/// `GET /v1/functions/{name}/versions`: every version and which one is current.
pub async fn versions(
    State(s): State<Shared>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> HttpResult<Json<cloister_types::wire::FunctionVersions>> {
    let caller = s.auth.authenticate(&headers).await?;
    let name = path_arg(name)?;
    caller.require_function(&name)?;
    let versions = s.store.list_versions(&name).await?;
    let latest = versions
        .last()
        .ok_or_else(|| not_found(&name, None))?
        .version;
    let current = s
        .store
        .get_current(&name)
        .await?
        .map_or(latest, |v| v.version);
    Ok(Json(cloister_types::wire::FunctionVersions {
        pinned: current != latest,
        current,
        versions,
    }))
}

/// `PUT /v1/functions/{name}/current` `{"version": V | null}` (owners and admins): which
/// version runs when a caller names none. Availability only: which versions may run with
/// secrets is decided by keyvault from owner-signed activations (`cloister fn rollback` sends
/// those first).
pub async fn set_current(
    State(s): State<Shared>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> HttpResult<Json<cloister_types::wire::FunctionVersions>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Developer, "choose a function's current version")?;
    let name = path_arg(name)?;
    let f = s
        .store
        .get_version(&name, None)
        .await?
        .ok_or_else(|| not_found(&name, None))?;
    caller.require_owner(&name, &f.owners)?;
    let bytes = crate::body::read_limited(&headers, body, 1024).await?;
    let req: cloister_types::wire::SetCurrentVersion = crate::body::parse_json(&bytes)?;
    if !s.store.set_current_version(&name, req.version).await? {
        return Err(not_found(&name, req.version));
    }
    s.functions.invalidate(&name);
    s.audit
        .record(
            AuditDraft::new(
                caller.token_id.clone(),
                Action::FunctionCurrent,
                name.clone(),
            )
            .detail(
                "version",
                req.version
                    .map_or(serde_json::Value::Null, serde_json::Value::from),
            ),
        )
        .await?;
    tracing::info!(%name, version = ?req.version, "current version set");
    versions(State(s), headers, Ok(Path(name))).await
}
