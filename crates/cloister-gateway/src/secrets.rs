//! `/v1/secrets` and `/v1/attestation`: the gateway forwards sealed values and metadata to
//! keyvault; it cannot read a secret value and refuses plaintext ones.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use cloister_rpc::keyvault::{
    AttestationRequest, ListSecretsRequest, PutSecretRequest, RotateDekRequest, RotateMekRequest,
    SecretPathRequest,
};
use cloister_types::{ErrorCode, Role, SecretPath};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::body;
use crate::deploy::path_arg;
use crate::error::{HttpError, HttpResult};
use crate::keyvault::{Keyvault, kv_error};
use crate::state::Shared;

/// Encapsulated key (32) plus the AES-GCM tag (16): no real ciphertext is shorter.
const MIN_SEALED_LEN: usize = 48;

/// Largest accepted PUT body (a sealed value of up to 64 KiB, base64-encoded, plus framing).
const MAX_SECRET_BODY: usize = 96 * 1024;

pub(crate) fn keyvault(s: &Shared) -> HttpResult<&Keyvault> {
    s.keyvault.as_ref().ok_or_else(|| {
        HttpError::new(
            ErrorCode::Unavailable,
            "this gateway has no keyvault configured (start it with --keyvault-url)",
        )
    })
}

fn secret_path(raw: &str) -> HttpResult<SecretPath> {
    SecretPath::parse(raw).map_err(|e| HttpError::new(ErrorCode::InvalidSecretPath, e.to_string()))
}

/// `GET /v1/attestation` (no authentication: clients check it before trusting anything).
pub async fn attestation(
    State(s): State<Shared>,
) -> HttpResult<Json<cloister_types::wire::AttestationBundle>> {
    use cloister_types::wire::{AttestationBundle, FleetKey, KeyvaultPart};
    let kv = keyvault(&s)?;
    let b = kv
        .client()
        .attestation(kv.request(AttestationRequest {}))
        .await
        .map_err(kv_error)?
        .into_inner();
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(Json(AttestationBundle {
        tee: b.tee,
        tee_label: b.tee_label,
        keyvault: KeyvaultPart {
            evidence: b64.encode(&b.evidence),
            hpke_public_key: hex::encode(&b.hpke_public_key),
            hpke_suite: b.hpke_suite,
            audit_public_key: hex::encode(&b.audit_public_key),
            registry_digest: hex::encode(&b.registry_digest),
            admins: b.admins,
            fleet_keys: b
                .fleet_keys
                .into_iter()
                .map(|k| FleetKey {
                    key_id: hex::encode(&k.key_id),
                    epoch: k.epoch,
                    public_key: hex::encode(&k.public_key),
                    suite: k.suite,
                    not_before: k.not_before,
                    not_after: k.not_after,
                })
                .collect(),
        },
        executor_measurements: b.executor_measurements,
        sim_root_fingerprint: (!b.sim_root_fingerprint.is_empty())
            .then_some(b.sim_root_fingerprint),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    /// Base64 HPKE ciphertext.
    sealed: Option<String>,
    /// Base64 owner-signed `cloister/secret-write/v1` request (relayed to keyvault).
    signed: Option<String>,
    /// Present only when a client sends plaintext: always refused.
    value: Option<Value>,
}

async fn put_inner(
    s: &Shared,
    headers: &HeaderMap,
    raw: &str,
    body: Body,
    rotate: bool,
) -> HttpResult<Value> {
    let caller = s.auth.authenticate(headers).await?;
    caller.require(Role::Developer, "write secrets")?;
    let path = secret_path(raw)?;
    require_path_owner(s, &caller, &path).await?;
    let bytes = body::read_limited(headers, body, MAX_SECRET_BODY).await?;
    let req: PutBody = body::parse_json(&bytes).map_err(|_| {
        HttpError::new(
            ErrorCode::InvalidRequest,
            "the body must be {\"sealed\": \"<base64 HPKE ciphertext>\"}",
        )
    })?;
    if req.value.is_some() {
        return Err(HttpError::new(
            ErrorCode::InvalidRequest,
            "plaintext secret values are refused: seal the value to keyvault's attested key \
             (GET /v1/attestation) and send it as \"sealed\"; `cloister secret put` does this",
        ));
    }
    let sealed = req
        .sealed
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .ok_or_else(|| HttpError::new(ErrorCode::InvalidRequest, "\"sealed\" must be base64"))?;
    if sealed.len() < MIN_SEALED_LEN {
        return Err(HttpError::new(
            ErrorCode::InvalidRequest,
            "\"sealed\" is too short to be an HPKE ciphertext",
        ));
    }
    let kv = keyvault(s)?;
    let r = kv
        .client()
        .put_secret(kv.request(PutSecretRequest {
            path: path.to_string(),
            sealed,
            rotate,
            actor: caller.token_id.clone(),
            signed: decode_signed(req.signed.as_deref())?,
        }))
        .await
        .map_err(kv_error)?
        .into_inner();
    s.epochs.after_write().await;
    Ok(json!({"path": r.path, "version": r.version, "createdAt": r.created_at}))
}

/// `PUT /v1/secrets/{path}`.
pub async fn put(
    State(s): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> HttpResult<Json<Value>> {
    let raw = path_arg(path)?;
    put_inner(&s, &headers, &raw, body, false).await.map(Json)
}

/// `POST /v1/secrets/{path}:rotate`.
pub async fn post(
    State(s): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> HttpResult<Json<Value>> {
    // Who is asking comes first: an unauthenticated caller learns nothing about paths.
    s.auth.authenticate(&headers).await?;
    let raw = path_arg(path)?;
    let Some(p) = raw.strip_suffix(":rotate") else {
        return Err(HttpError::new(
            ErrorCode::NotFound,
            "POST on a secret path must end in :rotate",
        ));
    };
    put_inner(&s, &headers, p, body, true).await.map(Json)
}

/// The HTTP layer's ownership check for a secret path (keyvault checks the signature).
async fn require_path_owner(s: &Shared, caller: &Caller, path: &SecretPath) -> HttpResult<()> {
    if caller.role == Role::Admin {
        return Ok(());
    }
    let owners = s
        .store
        .function_owners(path.function_id())
        .await?
        .unwrap_or_default();
    caller.require_owner(&format!("function {}", path.function_id()), &owners)
}

/// Header carrying an owner-signed request (base64) on calls without a body (DELETE).
pub const SIGNED_HEADER: &str = "cloister-signed";

/// Decodes a relayed signed request (empty when absent: keyvault refuses what needs one).
fn decode_signed(b64: Option<&str>) -> HttpResult<Vec<u8>> {
    match b64 {
        None => Ok(Vec::new()),
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|_| HttpError::new(ErrorCode::InvalidRequest, "\"signed\" must be base64")),
    }
}

/// Authenticates a developer and names the secret a path-addressed call is about.
async fn path_call<'a>(
    s: &'a Shared,
    headers: &HeaderMap,
    path: Result<Path<String>, PathRejection>,
    action: &str,
) -> HttpResult<(&'a Keyvault, SecretPath, SecretPathRequest)> {
    let caller = s.auth.authenticate(headers).await?;
    caller.require(Role::Developer, action)?;
    let path = secret_path(&path_arg(path)?)?;
    require_path_owner(s, &caller, &path).await?;
    let signed = headers
        .get(SIGNED_HEADER)
        .map(|v| v.to_str().unwrap_or("!"));
    let req = SecretPathRequest {
        path: path.to_string(),
        actor: caller.token_id,
        signed: decode_signed(signed)?,
    };
    Ok((keyvault(s)?, path, req))
}

/// `GET /v1/secrets/{path}`: the versions of one secret (metadata only).
pub async fn versions(
    State(s): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> HttpResult<Json<Value>> {
    let (kv, _, req) = path_call(&s, &headers, path, "read secret metadata").await?;
    let r = kv
        .client()
        .secret_versions(kv.request(req))
        .await
        .map_err(kv_error)?
        .into_inner();
    let versions: Vec<Value> = r
        .versions
        .into_iter()
        .map(|v| json!({"version": v.version, "dekVersion": v.dek_version, "createdAt": v.created_at}))
        .collect();
    Ok(Json(json!({"path": r.path, "versions": versions})))
}

/// `DELETE /v1/secrets/{path}`.
pub async fn delete(
    State(s): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> HttpResult<axum::http::StatusCode> {
    let (kv, path, req) = path_call(&s, &headers, path, "delete secrets").await?;
    let r = kv
        .client()
        .delete_secret(kv.request(req))
        .await
        .map_err(kv_error)?
        .into_inner();
    s.epochs.after_write().await;
    if r.deleted {
        Ok(axum::http::StatusCode::NO_CONTENT)
    } else {
        Err(HttpError::new(
            ErrorCode::SecretNotFound,
            format!("secret {path} does not exist"),
        ))
    }
}

/// `GET /v1/secrets?prefix=...`: metadata of the secrets under a prefix.
pub async fn list(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> HttpResult<Json<cloister_types::wire::SecretList>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Developer, "list secrets")?;
    let mut prefix = cloister_types::names::NAMESPACE_PREFIX.to_owned();
    for (k, v) in crate::query::pairs(q.as_deref()) {
        match k.as_str() {
            "prefix" => prefix = v,
            _ => {
                return Err(HttpError::new(
                    ErrorCode::InvalidRequest,
                    format!("unknown query parameter {k:?}; use prefix=function-<id>/"),
                ));
            }
        }
    }
    if caller.role != Role::Admin {
        // Developers list one function's namespace, and only their own.
        let function_id = prefix
            .strip_prefix(cloister_types::names::NAMESPACE_PREFIX)
            .and_then(|rest| rest.split('/').next())
            .filter(|id| !id.is_empty() && prefix.len() > id.len() + 9)
            .ok_or_else(|| {
                HttpError::new(
                    ErrorCode::Forbidden,
                    "a developer token lists one function's secrets: prefix=function-<id>/",
                )
            })?;
        let owners = s
            .store
            .function_owners(function_id)
            .await?
            .unwrap_or_default();
        caller.require_owner(&format!("function {function_id}"), &owners)?;
    }
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .list_secrets(kv.request(ListSecretsRequest { prefix }))
        .await
        .map_err(kv_error)?
        .into_inner();
    let secrets = r
        .secrets
        .into_iter()
        .map(|x| cloister_types::wire::SecretSummary {
            path: x.path,
            latest_version: x.latest_version,
            versions: x.versions,
            created_at: x.created_at,
            updated_at: x.updated_at,
        })
        .collect();
    Ok(Json(cloister_types::wire::SecretList { secrets }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateDekBody {
    function: String,
}

/// `POST /v1/keyvault/rotate-dek` `{"function": NAME}` (admin).
pub async fn rotate_dek(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<Json<Value>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Admin, "rotate data keys")?;
    let bytes = body::read_limited(&headers, body, 4096).await?;
    let req: RotateDekBody = body::parse_json(&bytes)?;
    let f = s.functions.resolve(&req.function, None).await?;
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .rotate_dek(kv.request(RotateDekRequest {
            function_id: f.function_id.clone(),
            actor: caller.token_id.clone(),
        }))
        .await
        .map_err(kv_error)?
        .into_inner();
    s.epochs.after_write().await;
    Ok(Json(json!({
        "function": f.name, "namespace": r.namespace, "dekVersion": r.dek_version,
        "reencrypted": r.reencrypted,
    })))
}

/// `POST /v1/keyvault/rotate-mek` (admin).
pub async fn rotate_mek(State(s): State<Shared>, headers: HeaderMap) -> HttpResult<Json<Value>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Admin, "rotate the master key")?;
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .rotate_mek(kv.request(RotateMekRequest {
            actor: caller.token_id.clone(),
        }))
        .await
        .map_err(kv_error)?
        .into_inner();
    s.epochs.after_write().await;
    Ok(Json(json!({"mekId": r.mek_id, "rewrapped": r.rewrapped})))
}
