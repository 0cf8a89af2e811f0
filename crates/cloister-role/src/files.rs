//! Names of the files in a data directory that more than one process opens, and where each
//! role's database lives.

use std::path::Path;

use cloister_db::Location;

/// The gateway's SQLite database (functions, versions, tokens).
pub const GATEWAY_DATABASE_FILE: &str = "gateway.db";

/// keyvault's SQLite database (sealed root, wrapped keys, ciphertexts, audit log).
pub const KEYVAULT_DATABASE_FILE: &str = "keyvault.db";

/// The one database earlier builds kept for every role; each role takes a copy of it over.
pub const LEGACY_DATABASE_FILE: &str = "cloister.db";

/// keyvault's rollback guard.
pub const GUARD_FILE: &str = "keyvault.guard";

/// The recovery key `serve --dev` keeps (development only).
pub const RECOVERY_KEY_FILE: &str = "recovery.key";

/// Where a role's store is: `url` when given (`sqlite:PATH` or `postgres://…`), else the
/// role's SQLite file in `data_dir` — taken over from the single-database layout of earlier
/// builds when only that file exists (a consistent copy; the old file is left in place).
pub fn role_database(data_dir: &Path, file: &str, url: Option<&str>) -> anyhow::Result<Location> {
    if let Some(url) = url {
        return Ok(url.parse()?);
    }
    let path = data_dir.join(file);
    let legacy = data_dir.join(LEGACY_DATABASE_FILE);
    if !path.exists() && legacy.exists() {
        // Copied beside it, flushed, then renamed: a crash or a failed copy never leaves a
        // partial file under the role's name (which would pass for a new, empty store).
        let partial = data_dir.join(format!("{file}.takeover"));
        let _ = std::fs::remove_file(&partial);
        cloister_db::sqlite::backup_file(&legacy, &partial).map_err(|e| {
            anyhow::anyhow!(
                "cannot copy {} to {}: {e}",
                legacy.display(),
                partial.display()
            )
        })?;
        std::fs::File::open(&partial).and_then(|f| f.sync_all())?;
        std::fs::rename(&partial, &path)?;
        std::fs::File::open(data_dir).and_then(|d| d.sync_all())?;
        tracing::warn!(
            from = %legacy.display(),
            to = %path.display(),
            "copied the single-database layout of an earlier build; this role now uses its own \
             file (remove the old one once every role has started)"
        );
    }
    Ok(Location::sqlite(path))
}
