//! One platform per data directory. `serve` holds an exclusive lock on `DIR/serve.lock`
//! (`flock`: the kernel releases it when the process ends, however it ends) and writes its
//! pid and command there, so a second `serve`, a `keyvault restore` or a `keyvault migrate`
//! on the same directory stops with a clear error instead of sharing the database with a
//! running platform (and `restore` / `migrate` hold it while they work).
//!
//! Limits: roles started by hand (`cloister-keyvaultd run`, `cloister gateway`) do not take
//! it, and the lock is `serve`'s own, so after a `kill -9` of `serve` its children may still
//! be shutting down for a moment when the directory becomes free.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{Context as _, bail};

/// The lock file's name in a data directory.
pub const LOCK_FILE: &str = "serve.lock";

/// Held for as long as the platform runs; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Takes the data directory for `holder` (the command, e.g. `serve`), or says which process
/// has it and that it must stop before `what`.
pub fn acquire(dir: &Path, holder: &str, what: &str) -> anyhow::Result<DataDirLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        // A symlink planted here must not make the truncation below hit another file.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let (pid, command) = holder
                .trim()
                .split_once(' ')
                .unwrap_or((holder.trim(), "serve"));
            let pid = if pid.is_empty() { "unknown" } else { pid };
            bail!(
                "{} is in use by a running `cloister {command}` (pid {pid}): stop it before \
                 {what}, or use another --data-dir",
                dir.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{} {holder}", std::process::id()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "keyvault restore", "starting").unwrap();
        let e = acquire(dir.path(), "serve", "starting")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "running `cloister keyvault restore` (pid {})",
                std::process::id()
            )),
            "{e}"
        );
        assert!(e.contains("stop it before starting"), "{e}");
        drop(first);
        acquire(dir.path(), "serve", "starting").unwrap();
    }

    #[test]
    fn a_symlink_in_place_of_the_lock_file_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(LOCK_FILE)).unwrap();
        assert!(acquire(dir.path(), "serve", "starting").is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    }
}
