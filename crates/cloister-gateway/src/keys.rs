//! Keys keyvault keeps for functions (docs/CAPABILITIES.md): the gateway relays owner-signed
//! creations and rotations and lists public halves; keyvault generates, stores, signs and
//! decides. The gateway never holds a private key.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use cloister_rpc::keyvault::{KeyUseRequest, KeyView, ListKeysRequest};
use cloister_types::wire::{KeyInfo, KeyList, KeyUseBody, KeyUseResult};
use cloister_types::{ErrorCode, Role};

use crate::deploy::path_arg;
use crate::error::{HttpError, HttpResult};
use crate::functions::not_found;
use crate::keyvault::kv_error;
use crate::relay::signed_body;
use crate::secrets::keyvault;
use crate::state::Shared;

fn info(k: KeyView) -> KeyInfo {
    KeyInfo {
        name: k.name,
        algorithm: k.algorithm,
        version: k.version,
        public_key: (!k.public_key.is_empty()).then(|| hex::encode(&k.public_key)),
        function_id: k.function_id,
        function: k.function,
        keyvault_signature: hex::encode(&k.keyvault_signature),
    }
}

/// `POST /v1/keys`: an owner-signed creation or rotation of a function's key
/// (`cloister/key-write/v1`), relayed to keyvault, which makes the key.
pub async fn write(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<Json<KeyInfo>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Developer, "create or rotate keys")?;
    let req = signed_body(&headers, body).await?;
    let w = cloister_authority::request::inspect::<cloister_authority::ops::KeyWrite>(&req.signed)
        .map_err(|e| HttpError::new(e.code(), e.to_string()))?
        .body;
    // Owners are keyvault's to check; a developer token relays only for functions its
    // identity owns (the gateway's mirror of the owners, for a clear 403 first).
    if let Some(owners) = s.store.function_owners(&w.function_id).await? {
        caller.require_owner(&w.function_id, &owners)?;
    }
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .write_key(kv.request(req))
        .await
        .map_err(kv_error)?
        .into_inner();
    Ok(Json(info(r)))
}

/// Largest `POST /v1/keys/use` body: a 64 KiB message in base64 and the signed request.
const MAX_KEY_USE_BODY: usize = 96 * 1024;

/// `POST /v1/keys/use`: an owner-signed signature or check with a function's key
/// (`cloister/key-use/v1`), relayed to keyvault, which signs its result.
pub async fn use_key(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<Json<KeyUseResult>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Developer, "sign or verify with keys")?;
    let b: KeyUseBody = crate::body::json(&headers, body, MAX_KEY_USE_BODY).await?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let signed = b64
        .decode(&b.signed)
        .map_err(|_| HttpError::new(ErrorCode::InvalidRequest, "\"signed\" must be base64"))?;
    let message = b64
        .decode(&b.message)
        .map_err(|_| HttpError::new(ErrorCode::InvalidRequest, "\"message\" must be base64"))?;
    let u = cloister_authority::request::inspect::<cloister_authority::ops::KeyUse>(&signed)
        .map_err(|e| HttpError::new(e.code(), e.to_string()))?
        .body;
    if let Some(owners) = s.store.function_owners(&u.function_id).await? {
        caller.require_owner(&u.function_id, &owners)?;
    }
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .use_key(kv.request(KeyUseRequest { signed, message }))
        .await
        .map_err(kv_error)?
        .into_inner();
    Ok(Json(KeyUseResult {
        algorithm: r.algorithm,
        key_version: r.key_version,
        signature: (!r.signature.is_empty()).then(|| hex::encode(&r.signature)),
        recovery_id: r.recovery_id.and_then(|id| u8::try_from(id).ok()),
        valid: r.valid,
        keyvault_signature: hex::encode(&r.keyvault_signature),
    }))
}

/// `GET /v1/functions/{name}/keys`: the public facts of a function's keys.
pub async fn list(
    State(s): State<Shared>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> HttpResult<Json<KeyList>> {
    let caller = s.auth.authenticate(&headers).await?;
    let name = path_arg(name)?;
    caller.require_function(&name)?;
    let f = s
        .store
        .get_version(&name, None)
        .await?
        .ok_or_else(|| not_found(&name, None))?;
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .list_keys(kv.request(ListKeysRequest {
            function_id: f.function_id.clone(),
        }))
        .await
        .map_err(kv_error)?
        .into_inner();
    if r.keys.len() > 10_000 {
        return Err(HttpError::new(ErrorCode::Internal, "too many keys"));
    }
    Ok(Json(KeyList {
        function_id: f.function_id,
        keys: r.keys.into_iter().map(info).collect(),
    }))
}
