//! SQLite connections as every store opens them: WAL journal, `synchronous=FULL` (a write is
//! on disk before the call returns), foreign keys on, a busy timeout for the other process
//! sharing the file.

use std::path::Path;

use rusqlite::Connection;

use crate::StoreError;

/// Maps an SQLite error: constraint violations are conflicts, the rest backend failures.
pub fn backend(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(err, _) = &e {
        match err.code {
            rusqlite::ErrorCode::ConstraintViolation => {
                return StoreError::Conflict(e.to_string());
            }
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                return StoreError::Unavailable(e.to_string());
            }
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}

/// Opens (creating if needed) the database file at `path` with the durable pragmas.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
    configure(conn)
}

/// An in-memory database (tests and throwaway runs).
pub fn open_in_memory() -> Result<Connection, StoreError> {
    configure(Connection::open_in_memory().map_err(backend)?)
}

fn configure(conn: Connection) -> Result<Connection, StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(backend)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(backend)?;
    Ok(conn)
}

/// One connection shared by a store's calls, each run on the blocking pool in turn.
#[derive(Clone)]
pub struct Shared(std::sync::Arc<std::sync::Mutex<Connection>>);

impl Shared {
    /// Shares `conn`.
    pub fn new(conn: Connection) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(conn)))
    }

    /// Runs `f` with the connection, off the async threads.
    pub async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

/// Writes a consistent copy of the database at `db` to `out` (which must not exist, and is
/// created mode 0600), safe while another process writes to it (`VACUUM INTO` reads one
/// snapshot).
pub fn backup_file(db: &Path, out: &Path) -> Result<(), StoreError> {
    if out.exists() {
        return Err(StoreError::Conflict(format!("{} exists", out.display())));
    }
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    let target = out
        .to_str()
        .ok_or_else(|| StoreError::Backend("backup path is not UTF-8".into()))?;
    // Created private first: SQLite would create it with the process umask.
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", out.display())))?;
    }
    conn.execute("VACUUM INTO ?1", [target]).map_err(backend)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pragmas_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(&dir.path().join("db.sqlite")).unwrap();
        let mode: String = c
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        let sync: i64 = c
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        let fk: i64 = c
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous must be FULL");
        assert_eq!(fk, 1);
    }
}
