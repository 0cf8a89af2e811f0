//! The gateway's persistent state: functions, their immutable versions, API tokens.
//!
//! [`Store`] is the one interface every backend implements: [`SqliteStore`] (embedded
//! default) and [`PgStore`] (shared by several gateways), both held to the [`conformance`]
//! suite. Nothing of keyvault's lives here: its ciphertexts, keys, manifests and audit log are
//! in `cloister-vault-store`, which the gateway does not link. The store never sees secret
//! values: tokens are stored as SHA-256 hashes.

#![warn(missing_docs)]

pub mod conformance;
mod migrations;
mod model;
mod postgres;
mod sqlite;

pub use cloister_db::{Location, StoreError};
pub use model::{NewToken, NewVersion, TokenRecord, VersionRecord};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use std::sync::Arc;

/// Opens the gateway store at `location`, applying pending migrations.
pub async fn open(location: &Location) -> Result<Arc<dyn Store>, StoreError> {
    match location {
        Location::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path)?)),
        Location::Postgres(pg) => Ok(Arc::new(PgStore::connect(pg).await?)),
        _ => Err(StoreError::Backend(format!(
            "the gateway store has no backend for {location}"
        ))),
    }
}

use async_trait::async_trait;

/// Storage of the gateway (ARCHITECTURE §8). Every write is durable when it returns.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Adds a version to the function `new.name`, creating the function (with `new_function_id`)
    /// if it does not exist yet; returns the stored version with its assigned number.
    async fn create_version(&self, new: NewVersion) -> Result<VersionRecord, StoreError>;

    /// One version of a function (the latest when `version` is `None`).
    async fn get_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<VersionRecord>, StoreError>;

    /// The version a function runs when none is asked for: the latest, unless rolled back.
    async fn get_current(&self, name: &str) -> Result<Option<VersionRecord>, StoreError>;

    /// Every version of a function, oldest first (empty when there is no such function).
    async fn list_versions(&self, name: &str) -> Result<Vec<VersionRecord>, StoreError>;

    /// Makes `version` the one a function runs when no version is asked for (a rollback);
    /// `None` goes back to the latest. A new version makes the latest current again.
    /// `false` when there is no such function or version.
    async fn set_current_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<bool, StoreError>;

    /// The source code of one version.
    async fn get_code(&self, function_id: &str, version: u32)
    -> Result<Option<String>, StoreError>;

    /// The latest version of every function, ordered by name.
    async fn list_latest(&self) -> Result<Vec<VersionRecord>, StoreError>;

    /// Deletes a function and all its versions; `false` if there was none.
    async fn delete_function(&self, name: &str) -> Result<bool, StoreError>;

    /// Stores a new token (by hash).
    async fn create_token(&self, new: NewToken) -> Result<TokenRecord, StoreError>;

    /// The active (not revoked) token with this SHA-256 hash.
    async fn find_token(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError>;

    /// Every active token, oldest first.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Revokes a token; `false` if there is no active token with that id.
    async fn revoke_token(&self, id: &str) -> Result<bool, StoreError>;

    /// Owners (identity ids) of the function with this id, if it exists.
    async fn function_owners(&self, function_id: &str) -> Result<Option<Vec<String>>, StoreError>;

    /// Replaces the owners of a function (as keyvault reported them); `false` if there is no
    /// function with this id.
    async fn set_function_owners(
        &self,
        function_id: &str,
        owners: &[String],
    ) -> Result<bool, StoreError>;

    /// After an identity rotated its key: tokens bound to `old` act for `new`, and `new`
    /// replaces `old` in every function's owners. Returns the number of tokens rebound.
    async fn rebind_identity(&self, old: &str, new: &str) -> Result<u64, StoreError>;

    /// Revokes every active token bound to `identity` (it was revoked in keyvault); returns
    /// how many.
    async fn revoke_tokens_of(&self, identity: &str) -> Result<u64, StoreError>;
}
