//! `GET /v1/audit` and `GET /v1/audit/verify` (admin).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use cloister_rpc::keyvault::VerifyAuditRequest;
use cloister_types::wire::AuditVerdict;
use cloister_types::{ErrorCode, Role};

use crate::error::{HttpError, HttpResult};
use crate::keyvault::kv_error;
use crate::state::Shared;

/// Default and largest page of `GET /v1/audit`.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

fn parse_query(q: Option<&str>) -> HttpResult<(u64, u32)> {
    let mut after = 0u64;
    let mut limit = DEFAULT_LIMIT;
    for (k, v) in crate::query::pairs(q) {
        let (k, v) = (k.as_str(), v.as_str());
        let bad = || {
            HttpError::new(
                ErrorCode::InvalidRequest,
                format!("{k} must be a non-negative integer, got {v:?}"),
            )
        };
        match k {
            "after" => after = v.parse().map_err(|_| bad())?,
            "limit" => {
                limit = v.parse::<u32>().map_err(|_| bad())?;
                if limit == 0 || limit > MAX_LIMIT {
                    return Err(HttpError::new(
                        ErrorCode::InvalidRequest,
                        format!("limit must be 1..={MAX_LIMIT}"),
                    ));
                }
            }
            _ => {
                return Err(HttpError::new(
                    ErrorCode::InvalidRequest,
                    format!("unknown query parameter {k:?}; use after=<seq>&limit=<n>"),
                ));
            }
        }
    }
    Ok((after, limit))
}

/// `GET /v1/audit?after=<seq>&limit=N`: entries in order, plus keyvault's signed checkpoints
/// in the same range so clients can verify the chain themselves.
pub async fn list(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> HttpResult<Json<cloister_audit::AuditPage>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Admin, "read the audit log")?;
    let (after, limit) = parse_query(q.as_deref())?;
    Ok(Json(s.audit.page(after, limit).await?))
}

/// `GET /v1/audit/verify?nonce=<hex>`: keyvault checks the chain and signs its verdict over
/// the client's nonce; the gateway relays it untouched (it cannot forge one).
pub async fn verify(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> HttpResult<Json<AuditVerdict>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Admin, "verify the audit log")?;
    let mut nonce = None;
    for (k, v) in crate::query::pairs(q.as_deref()) {
        match k.as_str() {
            "nonce" => nonce = hex::decode(v).ok(),
            _ => {
                return Err(HttpError::new(
                    ErrorCode::InvalidRequest,
                    "the only query parameter is nonce=<hex>",
                ));
            }
        }
    }
    let nonce = nonce
        .filter(|n| (16..=64).contains(&n.len()))
        .ok_or_else(|| {
            HttpError::new(
                ErrorCode::InvalidRequest,
                "nonce=<hex of 16 to 64 random bytes> is required: the verdict is signed over it",
            )
        })?;
    let kv = s.keyvault.as_ref().ok_or_else(|| {
        HttpError::new(
            ErrorCode::Unavailable,
            "this gateway has no keyvault configured",
        )
    })?;
    let r = kv
        .client()
        .verify_audit(kv.request(VerifyAuditRequest {
            nonce: nonce.clone(),
        }))
        .await
        .map_err(kv_error)?
        .into_inner();
    Ok(Json(AuditVerdict {
        report_json: r.report_json,
        signature: hex::encode(r.signature),
        nonce: hex::encode(nonce),
    }))
}
