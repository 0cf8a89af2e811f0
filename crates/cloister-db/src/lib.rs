//! Database plumbing shared by the gateway's store (`cloister-store`) and keyvault's store
//! (`cloister-vault-store`): where a database is ([`Location`]), how to open it (SQLite file
//! with durable pragmas, or a PostgreSQL pool in its own schema), versioned migrations per
//! store ([`migrate`]) and the error type both report. It knows no table of either domain.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod location;
pub mod migrate;
pub mod pg;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
mod time;

pub use error::StoreError;
pub use location::{DatabaseUrl, Location, LocationError, PgLocation, PgTls, role_url};
pub use time::{format_rfc3339, now_rfc3339};

/// `u64` to SQL `BIGINT` (saturating: counters never reach it).
pub fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// SQL `BIGINT` to `u64` (negative values, which no writer stores, read as 0).
pub fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
