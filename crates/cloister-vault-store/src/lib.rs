//! keyvault's persistent state: the sealed root, wrapped keys, encrypted secret values, MACed
//! authority rows, used nonces and the hash-chained audit log — ciphertext and MACs only.
//!
//! Three traits ([`VaultStore`], [`AuthorityStore`], [`AuditLog`]) with two backends:
//! [`SqliteVault`] (embedded default) and [`PgVault`] (shared by keyvault replicas), both held
//! to the [`conformance`] suite. Only keyvault links this crate; the gateway has its own store
//! (`cloister-store`) and learns what it needs from keyvault over RPC.

#![warn(missing_docs)]

pub mod audit;
pub mod authority;
pub mod conformance;
mod migrations;
mod postgres;
mod postgres_authority;
mod postgres_batch;
mod sqlite;
mod sqlite_authority;
pub mod vault;

use std::sync::Arc;

pub use audit::{AuditKeeper, AuditLog, AuditMac};
pub use authority::{AuthorityRow, AuthorityStore, AuthorityWrite};
pub use cloister_db::{Location, StoreError};
pub use postgres::PgVault;
pub use sqlite::SqliteVault;
pub use vault::{
    DekRecord, EpochChange, MekRecord, RootRecord, SecretPut, SecretRecord, SecretSummary,
    SecretVersionInfo, VaultStore,
};

/// Everything keyvault persists through: its ciphertext tables, authority rows and the audit
/// log, in one backend.
pub trait KeyvaultStore: VaultStore + AuditLog + AuthorityStore {}
impl<T: VaultStore + AuditLog + AuthorityStore> KeyvaultStore for T {}

/// Opens keyvault's store at `location`, applying pending migrations.
pub async fn open(location: &Location) -> Result<Arc<dyn KeyvaultStore>, StoreError> {
    match location {
        Location::Sqlite(path) => Ok(Arc::new(SqliteVault::open(path)?)),
        Location::Postgres(pg) => Ok(Arc::new(PgVault::connect(pg).await?)),
        _ => Err(StoreError::Backend(format!(
            "keyvault's store has no backend for {location}"
        ))),
    }
}
