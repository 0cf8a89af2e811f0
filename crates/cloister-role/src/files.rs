//! Names of the files in a data directory that more than one process opens.

/// The SQLite database.
pub const DATABASE_FILE: &str = "cloister.db";

/// keyvault's rollback guard.
pub const GUARD_FILE: &str = "keyvault.guard";

/// The recovery key `serve --dev` keeps (development only).
pub const RECOVERY_KEY_FILE: &str = "recovery.key";
