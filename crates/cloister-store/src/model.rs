//! Records the gateway store reads and writes.

use cloister_types::wire::FunctionInfo;
use cloister_types::{Limits, Role};

/// A version to add (already validated by the caller).
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Function name.
    pub name: String,
    /// Id used only if this creates the function.
    pub new_function_id: String,
    /// Source code.
    pub code: String,
    /// `sha256:<hex>` of `code`.
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
    /// Version number assigned by keyvault (`None`: the next one).
    pub version: Option<u32>,
    /// Digest of the owner-signed manifest keyvault registered (hex SHA-256).
    pub manifest_digest: String,
    /// Owners keyvault reports for the function (identity ids).
    pub owners: Vec<String>,
    /// Non-secret configuration (`context.env`).
    pub env: std::collections::BTreeMap<String, String>,
    /// The file the code came from.
    pub source_name: Option<String>,
}

/// A stored function version: its public metadata (code is fetched separately).
pub type VersionRecord = FunctionInfo;

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Public id (used to revoke).
    pub id: String,
    /// SHA-256 of the bearer value.
    pub hash: [u8; 32],
    /// Role.
    pub role: Role,
    /// Human label.
    pub label: Option<String>,
    /// Identity (id) the token acts for; developer tokens act only on its functions.
    pub identity: Option<String>,
    /// Function names an invoker token may invoke; empty: every function.
    pub functions: Vec<String>,
}

/// A stored, active token (never the value).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    /// Public id.
    pub id: String,
    /// Role.
    pub role: Role,
    /// Human label.
    pub label: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Identity (id) the token acts for.
    pub identity: Option<String>,
    /// Function names an invoker token may invoke; empty: every function.
    pub functions: Vec<String>,
}
