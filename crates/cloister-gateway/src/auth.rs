//! Bearer-token authentication: tokens are random, stored only as SHA-256 hashes, and mapped
//! to a [`Role`] that each route checks.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine as _;
use cloister_audit::{Action, AuditDraft};
use cloister_store::{NewToken, Store, TokenRecord};
use cloister_types::{ErrorCode, Role};
use rand::RngExt as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{HttpError, HttpResult};

/// Prefix of every Cloister API token (lets secret scanners recognise leaked tokens).
pub const TOKEN_PREFIX: &str = "clt_";

/// How long an authenticated token is trusted without asking the store again.
const CACHE_TTL: Duration = Duration::from_secs(5);

/// The caller of a request, once authenticated.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token id.
    pub token_id: String,
    /// Role of the token.
    pub role: Role,
    /// Identity (id) the token acts for, if it is bound to one.
    pub identity: Option<String>,
    /// Functions (names) the token may invoke; empty: every function.
    pub functions: Vec<String>,
}

impl Caller {
    /// Fails with `forbidden` unless the token may invoke or read `function` (a scoped
    /// invoker token names the functions it may invoke, and sees no others).
    pub fn require_function(&self, function: &str) -> HttpResult<()> {
        if self.functions.is_empty() || self.functions.iter().any(|f| f == function) {
            return Ok(());
        }
        Err(HttpError::new(
            ErrorCode::Forbidden,
            format!(
                "this token may invoke only {}, not {function}",
                self.functions.join(", ")
            ),
        ))
    }

    /// Fails with `forbidden` unless the caller may act on a function owned by `owners`:
    /// admin tokens act on every function; developer tokens only for their identity's.
    /// (The HTTP layer's check; keyvault checks the owner's signature itself.)
    pub fn require_owner(&self, function: &str, owners: &[String]) -> HttpResult<()> {
        if self.role == Role::Admin {
            return Ok(());
        }
        match &self.identity {
            Some(id) if owners.iter().any(|o| o == id) => Ok(()),
            Some(id) => Err(HttpError::new(
                ErrorCode::Forbidden,
                format!("this token acts for identity {id}, which does not own {function}"),
            )),
            None => Err(HttpError::new(
                ErrorCode::Forbidden,
                format!(
                    "this {} token is bound to no identity, so it owns no function; \
                     create one with `cloister token create --for-identity <id>`",
                    self.role.as_str()
                ),
            )),
        }
    }

    /// Fails with `forbidden` unless the caller's role includes `needed`.
    pub fn require(&self, needed: Role, action: &str) -> HttpResult<()> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(HttpError::new(
                ErrorCode::Forbidden,
                format!(
                    "this token has the {} role, which cannot {action}; it needs the {} role",
                    self.role.as_str(),
                    needed.as_str()
                ),
            ))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value, the one parse both
/// authentication and the rate limiter use. The scheme name is case-insensitive (RFC 9110
/// §11.1); surrounding spaces are ignored.
pub fn bearer_token(value: &axum::http::HeaderValue) -> Option<&str> {
    let v = value.to_str().ok()?.trim_start();
    let (scheme, rest) = v.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with(' ') {
        return None;
    }
    Some(rest.trim()).filter(|t| !t.is_empty() && !t.contains(' '))
}

/// SHA-256 of a bearer token, the only form in which tokens are stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh token value (256 random bits) and its public id.
pub fn generate_token() -> (Zeroizing<String>, String) {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rng().fill(&mut bytes[..]);
    let value = Zeroizing::new(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..])
    ));
    let mut id = [0u8; 8];
    rand::rng().fill(&mut id[..]);
    (value, format!("tok_{}", hex::encode(id)))
}

/// Creates and stores a token; returns its record and its value (shown once).
pub async fn create_token(
    store: &dyn Store,
    role: Role,
    label: Option<String>,
    identity: Option<String>,
    functions: Vec<String>,
) -> HttpResult<(TokenRecord, Zeroizing<String>)> {
    let (value, id) = generate_token();
    let record = store
        .create_token(NewToken {
            id,
            hash: token_hash(&value),
            role,
            label,
            identity,
            functions,
        })
        .await?;
    Ok((record, value))
}

/// Authenticates requests against the store, with a short-lived cache of known tokens.
pub struct Authenticator {
    store: Arc<dyn Store>,
    audit: Arc<crate::audit_relay::AuditRelay>,
    cache: RwLock<HashMap<[u8; 32], (Caller, Instant)>>,
    /// (second, failures audited in it): caps audit writes from a flood of bad tokens.
    failures: std::sync::Mutex<(u64, u32)>,
}

/// Most authentication failures written to the audit log per second, so a flood of bad
/// tokens cannot grow the log without bound (the rest are only logged at debug level).
const AUDITED_FAILURES_PER_SEC: u32 = 20;

impl Authenticator {
    /// Authenticator over `store`, recording failures in `audit`.
    pub fn new(store: Arc<dyn Store>, audit: Arc<crate::audit_relay::AuditRelay>) -> Self {
        Self {
            store,
            audit,
            cache: RwLock::new(HashMap::new()),
            failures: std::sync::Mutex::new((0, 0)),
        }
    }

    /// Records an authentication failure (rate-limited) and returns its error.
    fn fail(&self, reason: &'static str, message: &'static str) -> HttpError {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let record = {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if f.0 != now {
                *f = (now, 0);
            }
            f.1 += 1;
            f.1 <= AUDITED_FAILURES_PER_SEC
        };
        if !record {
            tracing::debug!(reason, "authentication failure not audited (rate limit)");
        } else {
            let audit = self.audit.clone();
            let draft =
                AuditDraft::new("gateway", Action::AuthFailure, "api").detail("reason", reason);
            tokio::spawn(async move {
                if let Err(e) = audit.record(draft).await {
                    tracing::warn!(error = %e, "cannot audit an authentication failure");
                }
            });
        }
        HttpError::new(ErrorCode::Unauthorized, message)
    }

    /// Whether the token with this hash authenticated (against the store) within `within`
    /// and has not been revoked since (a revocation empties the cache).
    pub fn recently_authenticated(&self, hash: &[u8; 32], within: Duration) -> bool {
        self.cache
            .read()
            .ok()
            .and_then(|c| c.get(hash).map(|(_, at)| at.elapsed() < within))
            .unwrap_or(false)
    }

    /// Forgets every cached token (after a revocation).
    pub fn clear(&self) {
        if let Ok(mut c) = self.cache.write() {
            c.clear();
        }
    }

    /// Authenticates the `Authorization: Bearer` header of a request.
    pub async fn authenticate(&self, headers: &HeaderMap) -> HttpResult<Caller> {
        let caller = self.authenticate_any(headers).await?;
        if caller.role == Role::Metrics {
            return Err(HttpError::new(
                ErrorCode::Forbidden,
                "a metrics token reads GET /metrics and nothing else",
            ));
        }
        Ok(caller)
    }

    /// [`Auth::authenticate`] that also admits metrics tokens: for `GET /metrics` only.
    pub async fn authenticate_any(&self, headers: &HeaderMap) -> HttpResult<Caller> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                self.fail(
                    "missing_token",
                    "missing Authorization: Bearer <token> header",
                )
            })?;
        let token = bearer_token(value).ok_or_else(|| {
            self.fail(
                "malformed_header",
                "the Authorization header must be `Bearer <token>`",
            )
        })?;
        // Lookup is by hash, so no comparison of token values happens here at all.
        let hash = token_hash(token);
        if let Ok(cache) = self.cache.read()
            && let Some((caller, at)) = cache.get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(caller.clone());
        }
        let record = self
            .store
            .find_token(&hash)
            .await?
            .ok_or_else(|| self.fail("unknown_token", "unknown or revoked token"))?;
        let caller = Caller {
            token_id: record.id,
            role: record.role,
            identity: record.identity,
            functions: record.functions,
        };
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(hash, (caller.clone(), Instant::now()));
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;
    use axum::http::HeaderValue;

    #[test]
    fn the_bearer_scheme_is_matched_without_regard_to_case() {
        let t = |v: &'static str| bearer_token(&HeaderValue::from_static(v)).map(str::to_owned);
        for ok in ["Bearer abc", "bearer abc", "BEARER abc", "  Bearer   abc  "] {
            assert_eq!(t(ok).as_deref(), Some("abc"), "{ok}");
        }
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearerabc",
            "Basic abc",
            "Bearer a b",
            "Bear abc",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }
}
