//! The worker executable as the executor measured it: read once into a sealed, read-only
//! in-memory file, from which every worker is started. Replacing the file on disk (a
//! rebuild, an attacker on the host) changes nothing for a running executor: what it runs
//! is what its measurement covers.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha384};

/// Largest worker executable accepted (a path pointing at an endless file fails cleanly).
pub const MAX_WORKER_BYTES: u64 = 1 << 30;

/// `MFD_EXEC` (Linux 6.3).
const MFD_EXEC: libc::c_uint = 0x0010;
/// `F_SEAL_EXEC` (Linux 6.3).
const F_SEAL_EXEC: libc::c_int = 0x0020;

/// Why the worker image could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The worker executable could not be read.
    #[error("cannot read the worker executable {path}: {source}")]
    Read {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The in-memory copy could not be made or sealed.
    #[error("cannot make a sealed in-memory copy of the worker: {0}")]
    Memfd(std::io::Error),
}

/// A sealed in-memory copy of the worker executable.
#[derive(Debug)]
pub struct WorkerImage {
    fd: OwnedFd,
    sha384: [u8; 48],
    exec_path: PathBuf,
}

impl WorkerImage {
    /// Copies the executable at `path` into a sealed memory file.
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let read = |source| ImageError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|f| f.take(MAX_WORKER_BYTES + 1).read_to_end(&mut bytes))
            .map_err(read)?;
        if bytes.len() as u64 > MAX_WORKER_BYTES {
            return Err(read(std::io::Error::other(format!(
                "larger than {MAX_WORKER_BYTES} bytes"
            ))));
        }
        Self::from_bytes(&bytes)
    }

    /// Seals `bytes` (an executable) into a memory file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ImageError> {
        let sha384: [u8; 48] = Sha384::digest(bytes).into();
        let create = |flags: libc::c_uint| {
            // SAFETY: memfd_create with a NUL-terminated name and flags only.
            unsafe { libc::memfd_create(c"cloister-worker".as_ptr(), flags) }
        };
        // Ask for an executable memfd explicitly (required where `vm.memfd_noexec` is 1);
        // kernels before 6.3 do not know the flag (EINVAL) and make every memfd executable.
        let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        let mut raw = create(base | MFD_EXEC);
        if raw < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            raw = create(base);
        }
        if raw < 0 {
            return Err(ImageError::Memfd(std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor owned by nothing else.
        let mut writable = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        writable.write_all(bytes).map_err(ImageError::Memfd)?;
        // Where the kernel knows it, also seal the mode (no chmod games); before the seals
        // are sealed. SAFETY: fcntl on a descriptor we own; an unknown seal fails (EINVAL),
        // which changes nothing and is ignored.
        unsafe { libc::fcntl(writable.as_raw_fd(), libc::F_ADD_SEALS, F_SEAL_EXEC) };
        let seals =
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor we own.
        if unsafe { libc::fcntl(writable.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(ImageError::Memfd(std::io::Error::last_os_error()));
        }
        // Keep only a read-only descriptor: an executable with a writer open cannot be run.
        let ro = File::open(format!("/proc/self/fd/{}", writable.as_raw_fd()))
            .map_err(ImageError::Memfd)?;
        drop(writable);
        let fd = OwnedFd::from(ro);
        let exec_path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok(Self {
            fd,
            sha384,
            exec_path,
        })
    }

    /// SHA-384 of the executable (what the executor's configuration digest names).
    pub fn sha384(&self) -> &[u8; 48] {
        &self.sha384
    }

    /// Path that starts it (valid while this value lives; close-on-exec, so workers do not
    /// inherit it).
    pub fn exec_path(&self) -> &Path {
        &self.exec_path
    }

    /// The descriptor holding it.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sealed_copy_runs_and_cannot_be_changed() {
        let img = WorkerImage::load(Path::new("/bin/echo")).unwrap();
        let out = std::process::Command::new(img.exec_path())
            .arg("sealed")
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"sealed\n");
        // Neither the descriptor nor a reopened one can write it.
        let mut again = std::fs::OpenOptions::new()
            .write(true)
            .open(img.exec_path())
            .map(|mut f| f.write_all(b"x"));
        assert!(
            !matches!(again, Ok(Ok(()))),
            "the sealed copy accepted a write"
        );
        let _ = &mut again;
        let disk = std::fs::read("/bin/echo").unwrap();
        assert_eq!(img.sha384(), &<[u8; 48]>::from(Sha384::digest(&disk)));
    }
}
