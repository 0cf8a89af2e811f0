//! JSON bodies of the public HTTP API (see `shared/API.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::limits::{Limits, RequestedLimits};

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including token management.
    Admin,
    /// Deploy, list, delete and invoke functions.
    Developer,
    /// Invoke functions and read their metadata.
    Invoker,
    /// Read `GET /metrics` and nothing else (a Prometheus scraper's token).
    Metrics,
}

impl Role {
    /// The wire string of this role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Invoker => "invoker",
            Role::Metrics => "metrics",
        }
    }

    /// Parses a wire string.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "developer" => Some(Role::Developer),
            "invoker" => Some(Role::Invoker),
            "metrics" => Some(Role::Metrics),
            _ => None,
        }
    }

    /// Whether this role includes everything `needed` may do.
    pub fn allows(self, needed: Role) -> bool {
        let rank = |r: Role| match r {
            Role::Metrics => 0,
            Role::Invoker => 1,
            Role::Developer => 2,
            Role::Admin => 3,
        };
        rank(self) >= rank(needed)
    }
}

/// `POST /v1/functions` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeployRequest {
    /// Function name; redeploying a name adds a version.
    pub name: String,
    /// Runtime; only `javascript` today.
    pub runtime: String,
    /// Source code.
    pub code: String,
    /// Top-level function to call (default `handler`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Environment (default `production`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Declared secrets, `NAME` or `CATEGORY/NAME`.
    #[serde(default)]
    pub required_secrets: Vec<String>,
    /// Requested limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<RequestedLimits>,
    /// The owner-signed manifest of this version (base64 COSE_Sign1, see docs/MANIFESTS.md);
    /// every field above must match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Confidential code: the source sealed to a fleet key (`code` is then empty and the
    /// manifest says `confidential`); see docs/SEALED.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_code: Option<crate::sealed::SealedCode>,
    /// Non-secret configuration, handed to the code as `context.env` and visible in the
    /// manifest (`crate::function_env` has the rules).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The file the code came from (a base name), named in stack traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// Keys in keyvault the function may use (`context.sign`), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_keys: Vec<String>,
    /// Limits on the use of declared keys, by key name (`crate::key_limits`); keyvault
    /// enforces them on every use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_limits: BTreeMap<String, crate::KeyLimits>,
    /// Outbound `fetch`: allowlist, extra roots and egress-only secrets (docs/EGRESS.md);
    /// absent: the function reaches no network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<crate::egress::Egress>,
}

impl DeployRequest {
    /// A JavaScript deploy of `code` as `name`, every other field at its default (what the
    /// server fills in; the CLI and `cloister-client` sign the manifest).
    pub fn javascript(name: impl Into<String>, code: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            runtime: "javascript".into(),
            code: code.into(),
            entrypoint: None,
            environment: None,
            required_secrets: Vec::new(),
            limits: None,
            manifest: None,
            sealed_code: None,
            env: BTreeMap::new(),
            source_name: None,
            required_keys: Vec::new(),
            key_limits: BTreeMap::new(),
            egress: None,
        }
    }
}

/// Metadata of one deployed function version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionInfo {
    /// Function name.
    pub name: String,
    /// Stable id kept across versions.
    pub function_id: String,
    /// Version number, starting at 1.
    pub version: u32,
    /// `sha256:<hex>` of the source.
    pub code_hash: String,
    /// Runtime name.
    pub runtime: String,
    /// Entrypoint identifier.
    pub entrypoint: String,
    /// Environment.
    pub environment: String,
    /// Declared secrets.
    pub required_secrets: Vec<String>,
    /// Resolved limits.
    pub limits: Limits,
    /// RFC 3339 creation time of this version.
    pub created_at: String,
    /// Digest (hex SHA-256) of the owner-signed manifest keyvault holds for this version;
    /// a redeploy names it as `previous`.
    #[serde(default)]
    pub manifest_digest: String,
    /// Identities (ids) keyvault reports as the function's owners.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Non-secret configuration (`context.env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The file the code came from, named in stack traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// Set only on a deploy's answer: the current version already is this manifest's
    /// content, so nothing was registered (HTTP 200 instead of 201).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

/// `GET /v1/functions` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionList {
    /// Latest version of every function.
    pub functions: Vec<FunctionInfo>,
}

/// `POST /v1/functions/{name}/invoke` request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    /// Parameters passed to the handler (any JSON; `null` when absent).
    #[serde(default)]
    pub params: Option<Box<RawValue>>,
    /// Specific version to run (default latest; a sealed request names its own).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_int::opt_u32"
    )]
    pub version: Option<u32>,
    /// Parameters sealed to the fleet key instead of `params` (docs/SEALED.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<crate::sealed::SealedInput>,
    /// Hex nonce (at most 64 bytes): ask for a receipt signed by the executor that names it.
    #[serde(
        default,
        rename = "receiptNonce",
        skip_serializing_if = "Option::is_none"
    )]
    pub receipt_nonce: Option<String>,
    /// Hex Ed25519 receipt key of an executor whose evidence the caller already verified: a
    /// receipt that key signs leaves out `signer.evidence` (about 5 KB) instead of repeating it.
    #[serde(
        default,
        rename = "receiptSigner",
        skip_serializing_if = "Option::is_none"
    )]
    pub receipt_signer: Option<String>,
}

/// `POST /v1/functions/{name}/invoke` response.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvokeResponse {
    /// The handler's JSON result.
    pub result: Box<RawValue>,
    /// Unique id of this execution.
    pub execution_id: String,
    /// Version that ran.
    pub version: u32,
    /// Code hash of the version that ran.
    pub code_hash: String,
    /// Wall-clock duration inside the executor, milliseconds.
    pub duration_ms: f64,
    /// Lines logged with `context.log`.
    pub logs: Vec<String>,
    /// The executor's signed receipt, when `receiptNonce` asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<crate::receipt::Receipt>,
}

/// `GET /v1/functions/{name}/manifest`: the owner-signed manifest keyvault registered for a
/// version, as signed. Clients verify the signature against keyvault's registry (bound by its
/// evidence) and seal to its digest (docs/SEALED.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedManifest {
    /// Function id the version belongs to (the gateway's word: the executor checks it).
    pub function_id: String,
    /// Version number.
    pub version: u32,
    /// Standard base64 of the COSE_Sign1 bytes (docs/MANIFESTS.md).
    pub manifest: String,
}

/// `GET /v1/functions/{name}/versions` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionVersions {
    /// Every version, oldest first.
    pub versions: Vec<FunctionInfo>,
    /// The version that runs when none is asked for.
    pub current: u32,
    /// Whether `current` was set (a rollback) rather than being the latest.
    pub pinned: bool,
}

/// `PUT /v1/functions/{name}/current` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCurrentVersion {
    /// The version to run when none is asked for; `null` goes back to the latest.
    #[serde(default, deserialize_with = "crate::json_int::opt_u32")]
    pub version: Option<u32>,
}

/// `GET /v1/status`: the gateway's account of the platform (its word: `cloister status`
/// verifies keyvault's own evidence beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformStatus {
    /// The gateway's release.
    pub gateway_version: String,
    /// The executor, as the gateway sees it.
    pub executor: ExecutorStatus,
    /// Whether a keyvault is configured for this gateway.
    pub keyvault_configured: bool,
}

/// The executor in [`PlatformStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorStatus {
    /// It answered a status request.
    pub reachable: bool,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Warm workers.
    pub workers: u64,
    /// Workers started since the executor started.
    pub workers_spawned: u64,
    /// Workers retired since the executor started.
    pub workers_retired: u64,
    /// Workers run without any filesystem access (Landlock).
    pub filesystem_isolated: bool,
    /// Invocations go over an attested, MACed link.
    pub attested_link: bool,
    /// The executor measurement that link verified (hex), once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_measurement: Option<String>,
}

/// One recent invocation in `GET /v1/functions/{name}/invocations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRecord {
    /// Position in this gateway's history of the function (grows; `after` pages by it).
    pub seq: u64,
    /// When it finished (RFC 3339).
    pub at: String,
    /// Execution id.
    pub execution_id: String,
    /// Version that ran.
    pub version: u32,
    /// `ok` or the public error code.
    pub outcome: String,
    /// Wall-clock time at the gateway, milliseconds.
    pub duration_ms: f64,
    /// Sealed: the gateway never held its logs or error, so none are kept.
    pub sealed: bool,
    /// Lines the function logged (plain invocations only).
    pub logs: Vec<String>,
    /// The failure's message (plain invocations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/functions/{name}/invocations` response, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationHistory {
    /// Recent invocations after `after`, oldest first.
    pub invocations: Vec<InvocationRecord>,
    /// How long invocations are kept, seconds.
    pub retention_secs: u64,
}

/// One secret's metadata in `GET /v1/secrets` (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSummary {
    /// Full path: `function-<id>/<environment>/<category>/<name>`.
    pub path: String,
    /// Newest version number.
    pub latest_version: u64,
    /// Versions kept.
    pub versions: u64,
    /// When the first version was written (RFC 3339).
    pub created_at: String,
    /// When the newest version was written (RFC 3339).
    pub updated_at: String,
}

/// `GET /v1/secrets?prefix=...` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretList {
    /// The secrets under the prefix.
    pub secrets: Vec<SecretSummary>,
}

/// `POST /v1/tokens` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateRequest {
    /// Role of the new token.
    pub role: Role,
    /// Optional human label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Identity id the token acts for: a developer token deploys, deletes and writes secrets
    /// only for functions that identity owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Invoker tokens only: the functions (names) it may invoke; empty: every function.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
}

/// Metadata of a token (never its value or hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// Token id, used to revoke it.
    pub id: String,
    /// Role.
    pub role: Role,
    /// Human label.
    #[serde(default)]
    pub label: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Identity id the token acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The functions it may invoke (invoker tokens); empty: every function.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
}

/// `POST /v1/tokens` response: the only time a token's value is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenCreated {
    /// Metadata.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer token; store it now, it cannot be shown again.
    pub token: String,
}

/// `GET /v1/tokens` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenList {
    /// Every active token.
    pub tokens: Vec<TokenInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_request_fields_are_named_as_documented() {
        let r = InvokeRequest {
            params: None,
            version: Some(2),
            sealed: None,
            receipt_nonce: Some("00".into()),
            receipt_signer: Some("11".into()),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"params": null, "version": 2, "receiptNonce": "00", "receiptSigner": "11"})
        );
    }

    #[test]
    fn role_order() {
        assert!(Role::Admin.allows(Role::Developer));
        assert!(Role::Developer.allows(Role::Invoker));
        assert!(!Role::Invoker.allows(Role::Developer));
        assert!(!Role::Developer.allows(Role::Admin));
    }

    #[test]
    fn deploy_request_rejects_unknown_fields() {
        let bad = r#"{"name":"a","runtime":"javascript","code":"x","bogus":1}"#;
        assert!(serde_json::from_str::<DeployRequest>(bad).is_err());
        let ok = r#"{"name":"a","runtime":"javascript","code":"x","requiredSecrets":["K"],"limits":{"timeoutMs":100}}"#;
        let req: DeployRequest = serde_json::from_str(ok).unwrap();
        assert_eq!(req.limits.unwrap().timeout_ms, Some(100));
    }
}

/// Body of calls that relay one signed request (`POST /v1/identities`, `/v1/activations`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBody {
    /// Base64 COSE_Sign1 made by an identity (docs/MANIFESTS.md).
    pub signed: String,
}

/// One of a function's keys in keyvault, as the API shows it (never its private half).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyInfo {
    /// The key's name.
    pub name: String,
    /// `ed25519`, `ecdsa-p256`, `ecdsa-secp256k1` or `hmac-sha256`.
    pub algorithm: String,
    /// The newest version (the one that signs).
    pub version: u64,
    /// Hex: Ed25519 32 raw bytes, ECDSA the uncompressed SEC1 point; absent for HMAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The function whose namespace holds the key.
    pub function_id: String,
    /// That function's name, as keyvault binds it.
    pub function: String,
    /// Hex Ed25519 signature by keyvault's audit key over
    /// [`crate::binding::key_view_message`]: check it against a verified bundle's audit key
    /// (`cloister_client::keys::verify`) before trusting the public key.
    pub keyvault_signature: String,
    /// Whether the key may ever leave keyvault (sealed, by an owner- and admin-signed
    /// export); bound by keyvault's signature, so a verifier can rely on a `false`.
    #[serde(default)]
    pub exportable: bool,
    /// Whether the newest version was imported (its secret existed outside keyvault before);
    /// bound by keyvault's signature.
    #[serde(default)]
    pub imported: bool,
    /// The functions (names) the key is granted to, sorted; bound by keyvault's signature.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_to: Vec<String>,
    /// `POST /v1/keys` only: hex Ed25519 signature by keyvault's audit key over
    /// [`crate::binding::key_write_message`], binding this view to the owner's request
    /// (`cloister_client::keys::verify_write`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_signature: Option<String>,
}

/// `POST /v1/keys` request: an owner-signed `KeyWrite` and, for an import, the key's secret
/// sealed to keyvault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyWriteBody {
    /// Base64 COSE_Sign1 of a `KeyWrite` made by an owner's identity.
    pub signed: String,
    /// Imports only: base64 of the key's 32 secret bytes sealed to keyvault's HPKE key
    /// (info `crate::binding::key_import_info`); the request binds its SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// `POST /v1/keys/export` request: one `KeyExport` body signed twice, by an owner and by an
/// admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyExportBody {
    /// Base64 COSE_Sign1 of the `KeyExport` by an identity that owns the function.
    pub owner_signed: String,
    /// Base64 COSE_Sign1 of the same `KeyExport` by an admin (another identity).
    pub admin_signed: String,
}

/// `POST /v1/keys/export` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyExported {
    /// The key's algorithm.
    pub algorithm: String,
    /// The version exported.
    pub key_version: u64,
    /// Base64 HPKE to the recipient of the key's 32 secret bytes (info
    /// `crate::binding::key_export_info`).
    pub sealed: String,
    /// Hex public key of that version (absent for HMAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Hex Ed25519 signature by keyvault's audit key over
    /// [`crate::binding::key_export_message`]: check it before trusting what opens.
    pub keyvault_signature: String,
}

/// `GET /v1/functions/{name}/keys` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyList {
    /// The function's id.
    pub function_id: String,
    /// Its keys, by name.
    pub keys: Vec<KeyInfo>,
}

/// One version of a function's key (`GET /v1/functions/{name}/keys/{key}/versions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyVersionInfo {
    /// The version.
    pub version: u64,
    /// `ed25519`, `ecdsa-p256`, `ecdsa-secp256k1` or `hmac-sha256`.
    pub algorithm: String,
    /// Hex public key of this version (as in [`KeyInfo`]); absent for HMAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Whether this version was imported.
    #[serde(default)]
    pub imported: bool,
    /// Hex Ed25519 signature by keyvault's audit key over
    /// [`crate::binding::key_version_message`] (`cloister_client::keys::verify_version`).
    pub keyvault_signature: String,
}

/// `GET /v1/functions/{name}/keys/{key}/versions` response: every version of one key,
/// oldest first, so signatures made before a rotation can still be checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyVersions {
    /// The function's id.
    pub function_id: String,
    /// Its name, as keyvault binds it.
    pub function: String,
    /// The key's name.
    pub name: String,
    /// Its versions, oldest first.
    pub versions: Vec<KeyVersionInfo>,
}

/// `POST /v1/keys/use` request: an owner-signed use of a function's key
/// (`cloister/key-use/v1`) and the message whose SHA-256 it binds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUseBody {
    /// Base64 COSE_Sign1 of a `KeyUse` made by an owner's identity.
    pub signed: String,
    /// Base64 message (at most 64 KiB), in plain: the gateway reads it. Exactly one of
    /// `message` and `sealed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Base64 of the message sealed to keyvault's HPKE key (info
    /// `crate::binding::key_use_info`): the gateway relays it without reading it (it still
    /// sees the message's SHA-256, which the signed request binds). The CLI sends this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// `POST /v1/keys/use` response: keyvault's result, signed by its audit key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyUseResult {
    /// The key's algorithm.
    pub algorithm: String,
    /// The version that signed, that the checked signature matched, or (no match) the newest
    /// tried.
    pub key_version: u64,
    /// Hex signature (signing only): as `context.sign` returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// secp256k1 only: the recovery id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<u8>,
    /// Whether the signature checked out (checking only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    /// Hex Ed25519 signature by keyvault's audit key over
    /// [`crate::binding::key_use_message`] (bound to the SHA-256 of the signed request):
    /// check it with `cloister_client::keys::verify_use`.
    pub keyvault_signature: String,
}

/// `PUT /v1/secrets/{path}` and `POST /v1/secrets/{path}:rotate` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretPutBody {
    /// Base64 HPKE ciphertext of the value, sealed to keyvault's key for the path.
    pub sealed: String,
    /// Base64 owner-signed `cloister/secret-write/v1` request over the path, the operation
    /// and the ciphertext's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<String>,
}

/// `POST /v1/identities` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityGranted {
    /// Id of the identity granted.
    pub identity_id: String,
}

/// Owners of one function after a registry change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionOwners {
    /// Function id.
    pub function_id: String,
    /// Identity ids owning it now.
    pub owners: Vec<String>,
}

/// `POST /v1/registry` response: what keyvault changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryChanged {
    /// The identity the change was about (absent for owner changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_id: Option<String>,
    /// After a rotation, the new identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_to: Option<String>,
    /// Whether the identity is now revoked.
    pub revoked: bool,
    /// Functions whose owners changed.
    pub owners: Vec<FunctionOwners>,
    /// Active versions that no longer receive secrets (signer revoked as compromised).
    pub distrusted_versions: u32,
    /// The executor policy's version after a policy change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<u64>,
}

/// One identity of keyvault's registry (`GET /v1/registry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityInfo {
    /// Identity id.
    pub id: String,
    /// Hex Ed25519 public key.
    pub public_key: String,
    /// `admin`, `developer` or `machine`.
    pub role: String,
    /// Label.
    pub label: String,
    /// Revoked (or rotated away).
    pub revoked: bool,
    /// Revoked as compromised: versions it signed get no secrets.
    pub compromised: bool,
    /// The key that replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_to: Option<String>,
    /// Unix seconds after which it authorises nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

/// The executor attestation policy in force (a registry entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorPolicyInfo {
    /// Version (1 at bootstrap, +1 per admin-signed change).
    pub version: u64,
    /// The policy document (YAML).
    pub policy: String,
    /// Its measurement allowlist (hex).
    pub measurements: Vec<String>,
    /// `bootstrap` or the admin identity that set it.
    pub set_by: String,
}

/// `GET /v1/registry` response: keyvault's registry as relayed (check it against the bundle).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryView {
    /// Every registered identity, by id.
    pub identities: Vec<IdentityInfo>,
    /// The executor policy in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_policy: Option<ExecutorPolicyInfo>,
}

/// `POST /v1/activations` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationResult {
    /// Function id.
    pub function_id: String,
    /// Versions that may now receive secrets.
    pub active: Vec<u32>,
}

/// `GET /v1/audit/verify?nonce=<hex>` response: keyvault's verdict as signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerdict {
    /// The JSON text of keyvault's chain report, exactly as signed.
    pub report_json: String,
    /// Hex Ed25519 signature by keyvault's audit key over
    /// [`crate::binding::audit_verdict_message`] (nonce, report JSON).
    pub signature: String,
    /// The client's nonce (hex), echoed.
    pub nonce: String,
}

/// `GET /v1/attestation`: keyvault's attestation bundle as the gateway relays it (clients
/// verify it before trusting anything in it; see `cloister_client::attestation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationBundle {
    /// TEE type (`sim`, ...).
    pub tee: String,
    /// Human label of the TEE.
    pub tee_label: String,
    /// keyvault's part.
    pub keyvault: KeyvaultPart,
    /// Executor measurements keyvault releases secrets to (hex).
    pub executor_measurements: Vec<String>,
    /// Fingerprint of the sim platform root, as claimed by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_root_fingerprint: Option<String>,
}

/// keyvault's evidence and keys inside an [`AttestationBundle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyvaultPart {
    /// Base64 evidence; its report data binds every field of the bundle.
    pub evidence: String,
    /// Hex X25519 key for sealing secret values.
    pub hpke_public_key: String,
    /// HPKE suite name.
    pub hpke_suite: String,
    /// Hex Ed25519 key of audit checkpoints: keyvault's instance key.
    pub audit_public_key: String,
    /// Hex digest of keyvault's identity registry.
    #[serde(default)]
    pub registry_digest: String,
    /// Admin identity ids.
    #[serde(default)]
    pub admins: Vec<String>,
    /// The invocation (fleet) keys valid now, newest first.
    #[serde(default)]
    pub fleet_keys: Vec<FleetKey>,
}

/// One invocation (fleet) key: clients seal invocations to it while it is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetKey {
    /// Key id (hex): the first 8 bytes of the SHA-256 of the public key.
    pub key_id: String,
    /// Rotation epoch it belongs to.
    pub epoch: u64,
    /// Hex X25519 public key.
    pub public_key: String,
    /// HPKE suite name.
    pub suite: String,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub not_after: u64,
}
