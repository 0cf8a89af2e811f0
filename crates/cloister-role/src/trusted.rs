//! The trusted binaries: their names, the interface revision the launcher and they agree
//! on, where the launcher finds them, and what each measures.
//!
//! `cloister serve --dev` runs keyvault and the executor from their own small executables
//! (and the executor runs workers from a third), so a change to the CLI or the gateway
//! leaves every trusted measurement as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::tee::{self, FileDigest, Measurement};

pub use cloister_types::trusted::{
    EXECUTOR_BIN, INTERFACE, KEYVAULT_BIN, WORKER_BIN, version_line,
};

/// Environment variable naming the directory of the trusted binaries (default: the
/// directory of the running `cloister`).
pub const DIR_ENV: &str = "CLOISTER_TRUSTED_DIR";

/// Where the three trusted executables are.
#[derive(Debug, Clone, Serialize)]
pub struct TrustedBinaries {
    /// keyvault.
    pub keyvault: PathBuf,
    /// The executor.
    pub executor: PathBuf,
    /// The worker.
    pub worker: PathBuf,
}

impl TrustedBinaries {
    /// The binaries in `dir`, or else in the directory of the running executable.
    pub fn locate(dir: Option<&Path>) -> anyhow::Result<Self> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::current_exe()
                .context("cannot locate the running executable")?
                .parent()
                .map(Path::to_path_buf)
                .context("the running executable has no directory")?,
        };
        let pick = |name: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            let meta = std::fs::metadata(&p).with_context(|| {
                format!(
                    "the trusted binary {name} is not in {} (build it with `cargo build \
                     --release`, which builds every binary, or point --trusted-dir / \
                     {DIR_ENV} at the directory holding it)",
                    dir.display()
                )
            })?;
            use std::os::unix::fs::PermissionsExt;
            if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
                bail!("{} is not an executable file", p.display());
            }
            Ok(p)
        };
        Ok(Self {
            keyvault: pick(KEYVAULT_BIN)?,
            executor: pick(EXECUTOR_BIN)?,
            worker: pick(WORKER_BIN)?,
        })
    }

    /// Runs each with `--version` and refuses any that is not this release and interface
    /// (a stale binary left from another build would not understand what it is passed).
    pub fn check_versions(&self) -> anyhow::Result<()> {
        for (path, name) in [
            (&self.keyvault, KEYVAULT_BIN),
            (&self.executor, EXECUTOR_BIN),
            (&self.worker, WORKER_BIN),
        ] {
            let out = std::process::Command::new(path)
                .arg("--version")
                .env_clear()
                .stdin(std::process::Stdio::null())
                .output()
                .with_context(|| format!("cannot run {} --version", path.display()))?;
            let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let want = version_line(name);
            if !out.status.success() || got != want {
                bail!(
                    "{} is not the version this cloister expects: it says {got:?}, expected \
                     {want:?}. Rebuild all binaries together (`cargo build --release`).",
                    path.display()
                );
            }
        }
        Ok(())
    }

    /// keyvault's measurement alone.
    pub fn keyvault_measurement(&self) -> anyhow::Result<Measurement> {
        tee::measure_path(
            &self.keyvault,
            tee::KEYVAULT_ROLE,
            &tee::keyvault_config_digest(),
        )
    }

    /// Measures all three as `serve --dev` configures them: the executor trusting this
    /// keyvault, running this worker, with `secrets_ttl_secs` and `worker_uids`.
    pub fn measure(
        &self,
        secrets_ttl_secs: u64,
        worker_uids: std::ops::Range<u32>,
    ) -> anyhow::Result<Measured> {
        let keyvault_config = tee::keyvault_config_digest();
        let keyvault = tee::measure_path(&self.keyvault, tee::KEYVAULT_ROLE, &keyvault_config)?;
        let worker = tee::sha384_file(&self.worker)?;
        let executor_config = tee::executor_config_digest(&tee::ExecutorSettings {
            worker,
            keyvaults: vec![keyvault],
            secrets_ttl_secs,
            worker_uids,
        });
        let executor = tee::measure_path(&self.executor, tee::EXECUTOR_ROLE, &executor_config)?;
        Ok(Measured {
            keyvault,
            keyvault_config,
            executor,
            executor_config,
            worker,
        })
    }
}

/// The trusted binaries' measurements (what allowlists hold) as `serve --dev` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// keyvault's measurement.
    pub keyvault: Measurement,
    /// keyvault's configuration digest.
    pub keyvault_config: [u8; 32],
    /// The executor's measurement (its configuration names the worker and keyvault).
    pub executor: Measurement,
    /// The executor's configuration digest.
    pub executor_config: [u8; 32],
    /// SHA-384 of the worker executable.
    pub worker: FileDigest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_stale_binary_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = TrustedBinaries::locate(Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(KEYVAULT_BIN) && e.contains("--trusted-dir"),
            "{e}"
        );
        use std::os::unix::fs::PermissionsExt;
        for name in [KEYVAULT_BIN, EXECUTOR_BIN, WORKER_BIN] {
            let p = dir.path().join(name);
            // A stand-in that reports another interface revision.
            std::fs::write(
                &p,
                format!("#!/bin/sh\necho '{name} 0.0.1 (interface 0)'\n"),
            )
            .unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let found = TrustedBinaries::locate(Some(dir.path())).unwrap();
        let e = found.check_versions().unwrap_err().to_string();
        assert!(e.contains("not the version"), "{e}");
        // Measurements change with any byte of any of the three.
        let before = found.measure(30, 1..2).unwrap();
        std::fs::write(&found.worker, b"other worker").unwrap();
        let after = found.measure(30, 1..2).unwrap();
        assert_eq!(before.keyvault, after.keyvault);
        assert_ne!(before.executor, after.executor);
        assert_ne!(before.worker, after.worker);
    }
}
