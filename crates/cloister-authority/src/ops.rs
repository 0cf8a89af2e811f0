//! Signed operations other than deploys.

use serde::{Deserialize, Serialize};

use crate::request::Body;

/// A write to one secret path (domain `cloister/secret-write/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretWrite {
    /// Full secret path.
    pub path: String,
    /// What is done.
    pub op: SecretOp,
    /// Hex SHA-256 of the sealed value (empty for a delete): the signature covers the value
    /// without revealing it.
    pub sealed_digest: String,
}

impl Body for SecretWrite {
    const DOMAIN: &'static str = "cloister/secret-write/v1";
}

/// Kinds of secret writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecretOp {
    /// New secret or new version.
    Put,
    /// New version of an existing secret.
    Rotate,
    /// Delete with every version.
    Delete,
}

/// Roles in keyvault's identity registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IdentityRole {
    /// Changes the registry; may act on every function.
    Admin,
    /// Creates functions and acts on those it owns.
    Developer,
}

impl IdentityRole {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Developer => "developer",
        }
    }
}

/// An admin adds (or re-roles) an identity (domain `cloister/identity-grant/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityGrant {
    /// Hex Ed25519 public key of the identity.
    pub public_key: String,
    /// Role granted.
    pub role: IdentityRole,
    /// Human label.
    pub label: String,
}

impl Body for IdentityGrant {
    const DOMAIN: &'static str = "cloister/identity-grant/v1";
}

/// An owner activates or deactivates a version (domain `cloister/activate/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    /// Function id.
    pub function_id: String,
    /// Version.
    pub version: u32,
    /// true to activate, false to deactivate.
    pub active: bool,
}

impl Body for Activation {
    const DOMAIN: &'static str = "cloister/activate/v1";
}
