//! First-start bootstrap of a development platform: the admin token file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use cloister_store::Store;
use cloister_types::Role;

use crate::auth::{create_token, token_hash};

/// What [`ensure_admin_token`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminToken {
    /// A new admin token was created and written to the file.
    Created,
    /// The file holds an active admin token.
    Existing,
    /// The file exists but its token is not active here (revoked, or another database).
    Stale,
}

/// Why the bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The token file could not be read or written.
    #[error("admin token file {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The store refused.
    #[error("could not store the admin token: {0}")]
    Store(String),
}

/// Makes sure `path` holds an admin token: creates one (file mode 0600) if the file is absent.
/// An existing file is never overwritten, so revoking its token is permanent.
pub async fn ensure_admin_token(
    store: &dyn Store,
    path: &Path,
) -> Result<AdminToken, BootstrapError> {
    let io = |source| BootstrapError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(existing) => {
            let active = store
                .find_token(&token_hash(existing.trim()))
                .await
                .map_err(|e| BootstrapError::Store(e.to_string()))?;
            return Ok(match active {
                Some(t) if t.role == Role::Admin => AdminToken::Existing,
                _ => AdminToken::Stale,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let (record, value) = create_token(store, Role::Admin, Some("dev admin".into()), None, vec![])
        .await
        .map_err(|e| BootstrapError::Store(e.0.message))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(value.as_bytes())
        .and_then(|_| file.write_all(b"\n"))
        .and_then(|_| file.sync_all())
        .map_err(io)?;
    tracing::info!(id = %record.id, "created the development admin token");
    Ok(AdminToken::Created)
}
