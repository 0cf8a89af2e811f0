//! One platform per data directory. `serve` holds an exclusive lock on `DIR/serve.lock`
//! (`flock`: the kernel releases it when the process ends, however it ends) and writes its
//! pid there, so a second `serve`, or a `keyvault restore`, on the same directory stops with a
//! clear error instead of sharing the database with a running platform.

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

/// Takes the data directory for this process, or says which process has it.
pub fn acquire(dir: &Path, what: &str) -> anyhow::Result<DataDirLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let pid = if holder.is_empty() {
                "pid unknown".to_owned()
            } else {
                format!("pid {holder}")
            };
            bail!(
                "{} is in use by a running `cloister serve` ({pid}): stop it before {what}, or \
                 use another --data-dir",
                dir.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "starting").unwrap();
        let e = acquire(dir.path(), "starting").unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("stop it before starting"), "{e}");
        drop(first);
        acquire(dir.path(), "starting").unwrap();
    }
}
