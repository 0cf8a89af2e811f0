//! Signed requests the gateway only relays to keyvault: identity grants, registry changes and
//! activations. The gateway authenticates the token (routing, quotas); keyvault decides, and
//! the gateway mirrors what keyvault reports in its own routing tables.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine as _;
use cloister_audit::{Action, AuditDraft};
use cloister_rpc::keyvault::SignedRequest;
use cloister_types::wire::{
    ActivationResult, ExecutorPolicyInfo, FunctionOwners, IdentityGranted, IdentityInfo,
    RegistryChanged, RegistryView, SignedBody,
};
use cloister_types::{ErrorCode, Role};

use crate::body;
use crate::error::{HttpError, HttpResult};
use crate::keyvault::kv_error;
use crate::secrets::keyvault;
use crate::state::Shared;

/// Largest signed request relayed.
const MAX_SIGNED_BODY: usize = 16 * 1024;

pub(crate) async fn signed_body(headers: &HeaderMap, body: Body) -> HttpResult<SignedRequest> {
    let b: SignedBody = body::json(headers, body, MAX_SIGNED_BODY).await?;
    let signed = base64::engine::general_purpose::STANDARD
        .decode(&b.signed)
        .map_err(|_| HttpError::new(ErrorCode::InvalidRequest, "\"signed\" must be base64"))?;
    Ok(SignedRequest {
        signed,
        sealed_code: None,
        sealed: Vec::new(),
    })
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
    s.epochs.after_write().await;
    Ok(Json(IdentityGranted {
        identity_id: r.identity_id,
    }))
}

/// `POST /v1/registry`: a signed rotation, revocation or owner change. keyvault decides who
/// may sign each; the gateway then mirrors owners and token bindings for its 403 checks.
pub async fn change_registry(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<Json<RegistryChanged>> {
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Developer, "change the identity registry")?;
    let req = signed_body(&headers, body).await?;
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .change_registry(kv.request(req))
        .await
        .map_err(kv_error)?
        .into_inner();
    s.epochs.after_write().await;
    let nonempty = |x: String| (!x.is_empty()).then_some(x);
    let out = RegistryChanged {
        identity_id: nonempty(r.identity_id),
        rotated_to: nonempty(r.rotated_to),
        revoked: r.revoked,
        owners: r
            .owners
            .into_iter()
            .map(|o| FunctionOwners {
                function_id: o.function_id,
                owners: o.owners,
            })
            .collect(),
        distrusted_versions: r.distrusted_versions,
        policy_version: (r.policy_version != 0).then_some(r.policy_version),
    };
    // Mirror keyvault's decision in the routing tables (keyvault stays the authority).
    match (&out.identity_id, &out.rotated_to) {
        (Some(old), Some(new)) => {
            s.store.rebind_identity(old, new).await?;
        }
        (Some(old), None) if out.revoked => {
            let n = s.store.revoke_tokens_of(old).await?;
            tracing::info!(identity = %old, tokens = n, "revoked the tokens of a revoked identity");
            if n > 0 {
                s.audit
                    .record(
                        AuditDraft::new(caller.token_id.clone(), Action::TokenRevoke, old.clone())
                            .detail("reason", "identity revoked")
                            .detail("tokens", n),
                    )
                    .await?;
            }
        }
        _ => {}
    }
    for o in &out.owners {
        s.store
            .set_function_owners(&o.function_id, &o.owners)
            .await?;
    }
    // Cached token lookups carry the identity they were bound to.
    s.auth.clear();
    Ok(Json(out))
}

/// `GET /v1/functions/{name}/manifest[?version=N]`: the owner-signed manifest keyvault
/// registered for that version, as signed (public; clients verify it before sealing to it).
pub async fn manifest(
    State(s): State<Shared>,
    headers: HeaderMap,
    name: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> HttpResult<Json<cloister_types::wire::SignedManifest>> {
    use base64::Engine as _;
    let caller = s.auth.authenticate(&headers).await?;
    caller.require(Role::Invoker, "read manifests")?;
    let name = crate::deploy::path_arg(name)?;
    caller.require_function(&name)?;
    let version = crate::deploy::version_query(q.as_deref())?;
    // A name the gateway no longer knows (its function deleted here) may still be bound in
    // keyvault: its latest manifest is what a redeploy by its owners names as previous.
    let ask = match s.functions.resolve(&name, version).await {
        Ok(f) => cloister_rpc::keyvault::GetManifestRequest {
            function_id: f.function_id.clone(),
            version: f.version,
            name: String::new(),
        },
        // Only for those who may deploy (the fallback exists for their redeploys), and only
        // for a well-formed name.
        Err(e)
            if e.0.code == cloister_types::ErrorCode::FunctionNotFound
                && version.is_none()
                && caller.role.allows(Role::Developer)
                && cloister_types::FunctionName::parse(&name).is_ok() =>
        {
            cloister_rpc::keyvault::GetManifestRequest {
                function_id: String::new(),
                version: 0,
                name: name.clone(),
            }
        }
        Err(e) => return Err(e),
    };
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .get_manifest(kv.request(ask))
        .await
        .map_err(kv_error)?
        .into_inner();
    Ok(Json(cloister_types::wire::SignedManifest {
        function_id: r.function_id,
        version: r.version,
        manifest: base64::engine::general_purpose::STANDARD.encode(r.signed),
    }))
}

/// `GET /v1/registry`: keyvault's registry (identities with public keys, roles and labels,
/// and the executor policy). Clients check it against what keyvault's evidence binds.
pub async fn registry(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> HttpResult<Json<RegistryView>> {
    let caller = s.auth.authenticate(&headers).await?;
    // Invokers read it too: it is what sealed calls check a function's manifest signer against.
    caller.require(Role::Invoker, "read the registry")?;
    let kv = keyvault(&s)?;
    let r = kv
        .client()
        .get_registry(kv.request(cloister_rpc::keyvault::GetRegistryRequest {}))
        .await
        .map_err(kv_error)?
        .into_inner();
    let nonempty = |x: String| (!x.is_empty()).then_some(x);
    Ok(Json(RegistryView {
        executor_policy: r.executor_policy.map(|p| ExecutorPolicyInfo {
            version: p.version,
            policy: p.policy,
            measurements: p.measurements,
            set_by: p.set_by,
        }),
        identities: r
            .identities
            .into_iter()
            .map(|i| IdentityInfo {
                id: i.id,
                public_key: i.public_key,
                role: i.role,
                label: i.label,
                revoked: i.revoked,
                compromised: i.compromised,
                rotated_to: nonempty(i.rotated_to),
                expires: (i.expires != 0).then_some(i.expires),
            })
            .collect(),
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
    s.epochs.after_write().await;
    Ok(Json(ActivationResult {
        function_id: r.function_id,
        active: r.active,
    }))
}
