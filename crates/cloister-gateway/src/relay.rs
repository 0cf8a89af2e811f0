//! Signed requests the gateway only relays to keyvault: identity grants and activations.
//! The gateway authenticates the token (routing, quotas); keyvault decides.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine as _;
use cloister_rpc::keyvault::SignedRequest;
use cloister_types::wire::{ActivationResult, IdentityGranted, SignedBody};
use cloister_types::{ErrorCode, Role};

use crate::body;
use crate::error::{HttpError, HttpResult};
use crate::keyvault::kv_error;
use crate::secrets::keyvault;
use crate::state::Shared;

/// Largest signed request relayed.
const MAX_SIGNED_BODY: usize = 16 * 1024;

async fn signed_body(headers: &HeaderMap, body: Body) -> HttpResult<SignedRequest> {
    let b: SignedBody = body::json(headers, body, MAX_SIGNED_BODY).await?;
    let signed = base64::engine::general_purpose::STANDARD
        .decode(&b.signed)
        .map_err(|_| HttpError::new(ErrorCode::InvalidRequest, "\"signed\" must be base64"))?;
    Ok(SignedRequest { signed })
}

/// `POST /v1/identities`: an admin-signed grant.
pub async fn grant(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<Json<IdentityGranted>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Admin, "change the identity registry")?;
    let req = signed_body(&headers, body).await?;
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .grant_identity(kv.request(req))
        .await
        .map_err(kv_error)?
        .into_inner();
    Ok(Json(IdentityGranted {
        identity_id: r.identity_id,
    }))
}

/// `POST /v1/activations`: an owner-signed activation or deactivation of a version.
pub async fn activate(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<Json<ActivationResult>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Developer, "activate versions")?;
    let req = signed_body(&headers, body).await?;
    if caller.role != Role::Admin {
        let a = cloister_authority::request::inspect::<cloister_authority::ops::Activation>(
            &req.signed,
        )
        .map_err(|e| HttpError::new(e.code(), e.to_string()))?;
        let owners = s
            .store
            .function_owners(&a.body.function_id)
            .await?
            .unwrap_or_default();
        caller.require_owner(&format!("function {}", a.body.function_id), &owners)?;
    }
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .activate(kv.request(req))
        .await
        .map_err(kv_error)?
        .into_inner();
    Ok(Json(ActivationResult {
        function_id: r.function_id,
        active: r.active,
    }))
}
