//! `POST/GET/DELETE /v1/tokens`: token management (admin only).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use cloister_store::TokenRecord;
use cloister_types::wire::{TokenCreateRequest, TokenCreated, TokenInfo, TokenList};
use cloister_types::{ErrorCode, Role};

use cloister_audit::{Action, AuditDraft};

use crate::auth::create_token;
use crate::body;
use crate::deploy::path_arg;
use crate::error::{HttpError, HttpResult};
use crate::state::Shared;

fn info(r: TokenRecord) -> TokenInfo {
    TokenInfo {
        id: r.id,
        role: r.role,
        label: r.label,
        created_at: r.created_at,
        identity: r.identity,
        functions: r.functions,
    }
}

/// `POST /v1/tokens`.
pub async fn create(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<(StatusCode, Json<TokenCreated>)> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Admin, "create tokens")?;
    let req: TokenCreateRequest = body::json(&headers, body, 16 * 1024).await?;
    if let Some(l) = &req.label
        && (l.chars().count() > 100 || l.chars().any(char::is_control))
    {
        return Err(HttpError::new(
            ErrorCode::InvalidRequest,
            "label must be at most 100 printable characters",
        ));
    }
    if let Some(id) = &req.identity {
        cloister_authority::IdentityId::parse(id)
            .map_err(|e| HttpError::new(ErrorCode::InvalidRequest, e.to_string()))?;
    }
    if !req.functions.is_empty() {
        if req.role != Role::Invoker {
            return Err(HttpError::new(
                ErrorCode::InvalidRequest,
                "\"functions\" scopes invoker tokens only",
            ));
        }
        if req.functions.len() > 100 {
            return Err(HttpError::new(
                ErrorCode::InvalidRequest,
                "an invoker token names at most 100 functions",
            ));
        }
        for f in &req.functions {
            cloister_types::names::FunctionName::parse(f)
                .map_err(|e| HttpError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        }
    }
    let (record, value) =
        create_token(&*s.store, req.role, req.label, req.identity, req.functions).await?;
    let draft = AuditDraft::new(
        caller.token_id.clone(),
        Action::TokenCreate,
        record.id.clone(),
    )
    .detail("role", record.role.as_str())
    .detail("label", record.label.clone())
    .detail("identity", record.identity.clone())
    .detail("functions", record.functions.clone());
    if let Err(e) = s.audit.record(draft).await {
        // No token exists that the audit log does not show.
        let _ = s.store.revoke_token(&record.id).await;
        s.auth.clear();
        return Err(e.into());
    }
    tracing::info!(id = %record.id, role = record.role.as_str(), by = %caller.token_id, "created token");
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            info: info(record),
            token: value.to_string(),
        }),
    ))
}

/// `GET /v1/tokens`.
pub async fn list(State(s): State<Shared>, headers: HeaderMap) -> HttpResult<Json<TokenList>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Admin, "list tokens")?;
    let tokens = s.store.list_tokens().await?.into_iter().map(info).collect();
    Ok(Json(TokenList { tokens }))
}

/// `DELETE /v1/tokens/{id}`.
pub async fn revoke(
    State(s): State<Shared>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> HttpResult<StatusCode> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Admin, "revoke tokens")?;
    let id = path_arg(id)?;
    if !s.store.revoke_token(&id).await? {
        return Err(HttpError::new(
            ErrorCode::NotFound,
            format!("no active token with id {id:?}"),
        ));
    }
    s.auth.clear();
    s.audit
        .record(AuditDraft::new(
            caller.token_id.clone(),
            Action::TokenRevoke,
            id.clone(),
        ))
        .await?;
    tracing::info!(%id, by = %caller.token_id, "revoked token");
    Ok(StatusCode::NO_CONTENT)
}
