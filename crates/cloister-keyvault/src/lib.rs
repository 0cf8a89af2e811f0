//! keyvault, the trusted role that holds secrets (ARCHITECTURE §4).
//!
//! This crate currently provides the key hierarchy the service is built on:
//! - [`sealing`]: the root key sealed to the measurement of the binary (a different binary
//!   cannot unseal it) plus a recovery key to migrate to a new measurement;
//! - [`hierarchy`]: the MEK wrapped by the root, one versioned DEK per function namespace
//!   wrapped by the MEK, and secret values under a DEK with AAD = path + version + DEK id.

pub mod audit_budget;
pub mod authority;
pub mod bundle;
pub mod error;
pub mod fleet;
pub mod freshness;
pub mod function_keys;
pub mod group_commit;
pub mod guard;
pub mod hierarchy;
pub mod key_rates;
pub mod key_record;
pub mod policy;
pub mod release;
pub mod sealing;
pub mod server;
pub mod service;
pub mod vault;

pub use error::{KeyvaultError, VaultError};
pub use hierarchy::{Dek, Mek};
pub use sealing::{RecoveryKey, SealedRoot};
pub use vault::{KeyvaultStore, Opened, Sealing, Vault, migrate, reseal_approved};
