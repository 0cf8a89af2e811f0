//! The rollback guard: keyvault's anti-rollback state kept **outside** the database, so that
//! restoring the database alone from an older copy is caught when keyvault starts.
//!
//! The guard holds an epoch and the newest audit checkpoint keyvault signed, under a MAC only
//! keyvault can compute; the database holds the epoch too (a MACed authority row). At start
//! both must agree and the database's audit chain must still contain that checkpoint's entry.
//! A legitimate restore is an admin-signed [`cloister_authority::ops::Restore`] that accepts
//! the restored chain as the new baseline under the next epoch.
//!
//! On hardware TEEs this state belongs in a monotonic counter or an external anti-rollback
//! service; under the simulated TEE it is a file in the data directory, so a host that rolls
//! back the database *and* this file together is not detected by keyvault itself (clients
//! still detect it against the checkpoint and epoch they pinned; see docs/SECRETS.md).

use std::io::Write;
use std::path::{Path, PathBuf};

use cloister_crypto::MacKey;
use serde::{Deserialize, Serialize};

/// The guarded facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardState {
    /// Anti-rollback epoch: 1 at first start, +1 per admin-signed restore.
    pub epoch: u64,
    /// Sequence number of the newest checkpointed audit entry (0: none yet).
    pub seq: u64,
    /// Its hash (hex).
    pub hash: String,
    /// Public keys (hex) of the live admins at that checkpoint: who may sign a restore, even
    /// of a copy whose own registry differs.
    #[serde(default)]
    pub admins: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardFile {
    kind: String,
    state: GuardState,
    mac: String,
}

const KIND: &str = "cloister-rollback-guard/v1";
const MAC_DOMAIN: &[u8] = b"cloister/rollback-guard/v1";

/// Why the guard refused (or could not be used).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// The file could not be read or written.
    #[error("rollback guard {path}: {reason}")]
    Io {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not one keyvault wrote.
    #[error("rollback guard {0} failed authentication (altered, or from another keyvault)")]
    Tampered(String),
}

/// The guard file of one keyvault.
pub struct Guard {
    path: PathBuf,
    mac: MacKey,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// The guard at `path`, authenticated with `mac`.
    pub fn new(path: &Path, mac: MacKey) -> Self {
        Self {
            path: path.to_owned(),
            mac,
        }
    }

    fn tag(&self, s: &GuardState) -> [u8; 32] {
        let admins = s.admins.join(",");
        self.mac.tag(&[
            MAC_DOMAIN,
            &s.epoch.to_be_bytes(),
            &s.seq.to_be_bytes(),
            s.hash.as_bytes(),
            admins.as_bytes(),
        ])
    }

    fn io(&self, e: impl std::fmt::Display) -> GuardError {
        GuardError::Io {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }

    /// The guarded state, if the file exists.
    pub fn load(&self) -> Result<Option<GuardState>, GuardError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let tampered = || GuardError::Tampered(self.path.display().to_string());
        let f: GuardFile = serde_json::from_str(&text).map_err(|_| tampered())?;
        let mac = hex::decode(&f.mac).map_err(|_| tampered())?;
        if f.kind != KIND || !cloister_crypto::ct_eq(&self.tag(&f.state), &mac) {
            return Err(tampered());
        }
        Ok(Some(f.state))
    }

    /// Replaces the file atomically (write, fsync, rename, fsync the directory).
    pub fn save(&self, state: &GuardState) -> Result<(), GuardError> {
        let f = GuardFile {
            kind: KIND.into(),
            state: state.clone(),
            mac: hex::encode(self.tag(state)),
        };
        let text = serde_json::to_vec_pretty(&f).map_err(|e| self.io(e))?;
        let tmp = self.path.with_extension("tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| self.io(e))?;
            file.write_all(&text)
                .and_then(|()| file.sync_all())
                .map_err(|e| self.io(e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_round_trips_and_refuses_edits_and_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g");
        let key = cloister_crypto::SecretKey32::from_array([4; 32]);
        let g = Guard::new(&path, MacKey::new(&key));
        assert_eq!(g.load().unwrap(), None);
        let s = GuardState {
            epoch: 1,
            seq: 7,
            hash: "ab".repeat(32),
            admins: vec!["cd".repeat(32)],
        };
        g.save(&s).unwrap();
        assert_eq!(g.load().unwrap(), Some(s));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"seq\": 7", "\"seq\": 3")).unwrap();
        assert!(matches!(g.load(), Err(GuardError::Tampered(_))));
        std::fs::write(&path, &text).unwrap();
        let other = Guard::new(
            &path,
            MacKey::new(&cloister_crypto::SecretKey32::from_array([5; 32])),
        );
        assert!(matches!(other.load(), Err(GuardError::Tampered(_))));
    }
}
