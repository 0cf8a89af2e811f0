//! Function manifests: what one version of a function is, signed by an owner. keyvault
//! releases secrets by them and the executor runs a function only as its manifest says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::request::Body;

/// Limits of a manifest (resolved values, never "default").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    /// Deadline in milliseconds.
    pub timeout_ms: u64,
    /// Memory in MiB.
    pub memory_mb: u32,
}

/// The signed description of a function version (domain `cloister/deploy/v1`).
///
/// For a new function `function_id` and `previous` are null and keyvault assigns the id; for
/// a new version both are set, `previous` being the digest (hex SHA-256 of the signed bytes)
/// of the function's latest manifest. keyvault assigns the version number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Function name.
    pub name: String,
    /// Function id (null when creating the function).
    pub function_id: Option<String>,
    /// Digest of the previous manifest (null when creating the function).
    pub previous: Option<String>,
    /// Environment (selects the secrets namespace).
    pub environment: String,
    /// Runtime (`javascript`).
    pub runtime: String,
    /// Entrypoint.
    pub entrypoint: String,
    /// `sha256:<hex>` of the source.
    pub code_hash: String,
    /// Declared secrets (`name` or `category/name`): exactly what keyvault may release.
    pub secrets: Vec<String>,
    /// Limits.
    pub limits: ManifestLimits,
    /// Whether this version becomes active (may receive secrets) when registered.
    pub activate: bool,
    /// Confidential code: stored only sealed under the function's code key, opened only by
    /// attested executors; sealed invocation is the default (absent: false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub confidential: bool,
    /// Non-secret configuration handed to the code as `context.env` (absent: none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The file the code was deployed from, named in its stack traces (absent: `function.js`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// Keys in keyvault the function may use by name (`context.sign`, `context.publicKey`);
    /// left out when empty, so manifests without keys keep their bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Limits on the use of declared keys, by key name, enforced by keyvault on every use;
    /// left out when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_limits: BTreeMap<String, cloister_types::KeyLimits>,
    /// Outbound `fetch`: the origins the function may reach, extra roots, egress-only secrets
    /// (docs/EGRESS.md); absent: no network at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<cloister_types::egress::Egress>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Body for Manifest {
    const DOMAIN: &'static str = "cloister/deploy/v1";
}
