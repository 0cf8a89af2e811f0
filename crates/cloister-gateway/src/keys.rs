//! Keys keyvault keeps for functions (docs/CAPABILITIES.md): the gateway relays owner-signed
//! creations and rotations and lists public halves; keyvault generates, stores, signs and
//! decides. The gateway never holds a private key.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use cloister_rpc::keyvault::{
    KeyExportRequest, KeyUseRequest, KeyVersionsRequest, KeyView, ListKeysRequest, SignedRequest,
};
use cloister_types::wire::{
    KeyExportBody, KeyExported, KeyInfo, KeyList, KeyUseBody, KeyUseResult, KeyVersionInfo,
    KeyVersions, KeyWriteBody,
};
use cloister_types::{ErrorCode, Role};

use crate::deploy::path_arg;
use crate::error::{HttpError, HttpResult};
use crate::functions::not_found;
use crate::keyvault::kv_error;
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
        exportable: k.exportable,
        imported: k.imported,
        write_signature: (!k.write_signature.is_empty()).then(|| hex::encode(&k.write_signature)),
        granted_to: k.granted_to,
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
    let b: KeyWriteBody = crate::body::json(&headers, body, MAX_KEY_WRITE_BODY).await?;
    let req = SignedRequest {
        signed: base64_field("signed", &b.signed)?,
        sealed_code: None,
        sealed: match &b.sealed {
            Some(s) => base64_field("sealed", s)?,
            None => Vec::new(),
        },
    };
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
    s.epochs.after_write().await;
    Ok(Json(info(r)))
}

/// Largest `POST /v1/keys` body: a signed request and a sealed 32-byte key.
const MAX_KEY_WRITE_BODY: usize = 16 * 1024;
/// Largest `POST /v1/keys/export` body: two signed requests.
const MAX_KEY_EXPORT_BODY: usize = 32 * 1024;

fn base64_field(name: &str, value: &str) -> HttpResult<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| {
            HttpError::new(
                ErrorCode::InvalidRequest,
                format!("\"{name}\" must be base64"),
            )
        })
}

/// `POST /v1/keys/export`: an export of an exportable key sealed to a recipient, signed by
/// an owner and by an admin (`cloister/key-export/v1`), relayed to keyvault, which checks
/// both, seals the key and signs what it sealed.
pub async fn export(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<Json<KeyExported>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Developer, "export keys")?;
    let b: KeyExportBody = crate::body::json(&headers, body, MAX_KEY_EXPORT_BODY).await?;
    let req = KeyExportRequest {
        owner_signed: base64_field("ownerSigned", &b.owner_signed)?,
        admin_signed: base64_field("adminSigned", &b.admin_signed)?,
    };
    let x = cloister_authority::request::inspect::<cloister_authority::ops::KeyExport>(
        &req.owner_signed,
    )
    .map_err(|e| HttpError::new(e.code(), e.to_string()))?
    .body;
    if let Some(owners) = s.store.function_owners(&x.function_id).await? {
        caller.require_owner(&x.function_id, &owners)?;
    }
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .export_key(kv.request(req))
        .await
        .map_err(kv_error)?
        .into_inner();
    Ok(Json(KeyExported {
        algorithm: r.algorithm,
        key_version: r.key_version,
        sealed: base64::engine::general_purpose::STANDARD.encode(&r.sealed),
        public_key: (!r.public_key.is_empty()).then(|| hex::encode(&r.public_key)),
        keyvault_signature: hex::encode(&r.keyvault_signature),
    }))
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
    let (message, sealed_message) = match (&b.message, &b.sealed) {
        (Some(m), None) => (
            b64.decode(m).map_err(|_| {
                HttpError::new(ErrorCode::InvalidRequest, "\"message\" must be base64")
            })?,
            Vec::new(),
        ),
        (None, Some(sealed)) => (
            Vec::new(),
            b64.decode(sealed).map_err(|_| {
                HttpError::new(ErrorCode::InvalidRequest, "\"sealed\" must be base64")
            })?,
        ),
        _ => {
            return Err(HttpError::new(
                ErrorCode::InvalidRequest,
                "send exactly one of \"message\" (plain) and \"sealed\" (sealed to keyvault)",
            ));
        }
    };
    let u = cloister_authority::request::inspect::<cloister_authority::ops::KeyUse>(&signed)
        .map_err(|e| HttpError::new(e.code(), e.to_string()))?
        .body;
    if let Some(owners) = s.store.function_owners(&u.function_id).await? {
        caller.require_owner(&u.function_id, &owners)?;
    }
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .use_key(kv.request(KeyUseRequest {
            signed,
            message,
            sealed_message,
        }))
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
    let (f, kv) = function_and_keyvault(&s, &name).await?;
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

/// `GET /v1/functions/{name}/keys/{key}/versions`: every version of one of a function's keys,
/// each signed by keyvault.
pub async fn versions(
    State(s): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> HttpResult<Json<KeyVersions>> {
    let caller = s.auth.authenticate(&headers).await?;
    let Path((name, key)) =
        path.map_err(|e| HttpError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    caller.require_function(&name)?;
    cloister_types::KeyName::parse(&key)
        .map_err(|e| HttpError::new(ErrorCode::InvalidRequest, e.to_string()))?;
    let (f, kv) = function_and_keyvault(&s, &name).await?;
    let r = kv
        .client()
        .list_key_versions(kv.request(KeyVersionsRequest {
            function_id: f.function_id.clone(),
            name: key.clone(),
        }))
        .await
        .map_err(kv_error)?
        .into_inner();
    if r.versions.len() > 100_000 {
        return Err(HttpError::new(ErrorCode::Internal, "too many key versions"));
    }
    Ok(Json(KeyVersions {
        function_id: f.function_id,
        function: r.function,
        name: key,
        versions: r
            .versions
            .into_iter()
            .map(|v| KeyVersionInfo {
                version: v.version,
                algorithm: v.algorithm,
                public_key: (!v.public_key.is_empty()).then(|| hex::encode(&v.public_key)),
                imported: v.imported,
                keyvault_signature: hex::encode(&v.keyvault_signature),
            })
            .collect(),
    }))
}

/// Function `name`'s current version and the keyvault client (`function_not_found`,
/// `unavailable`).
async fn function_and_keyvault<'a>(
    s: &'a Shared,
    name: &str,
) -> HttpResult<(cloister_store::VersionRecord, &'a crate::keyvault::Keyvault)> {
    let f = s
        .store
        .get_version(name, None)
        .await?
        .ok_or_else(|| not_found(name, None))?;
    Ok((f, keyvault(s)?))
}
