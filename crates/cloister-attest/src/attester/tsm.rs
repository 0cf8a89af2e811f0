//! Linux configfs-tsm (`/sys/kernel/config/tsm/report`): SEV-SNP and TDX evidence.
//!
//! Kernel ABI (Documentation/ABI/testing/configfs-tsm): creating a directory under
//! `report/` makes an entry with `inblob` (write up to 64 bytes of report data),
//! `outblob` (read the report or quote), `auxblob` (SEV-SNP certificate table),
//! `provider` (`sev_guest` or `tdx_guest`) and `generation` (bumped on every write).
//! If `generation` moved by more than one between writing `inblob` and reading
//! `outblob`, another process wrote the entry meanwhile and the result is discarded.

use super::{Attester, Produced, show};
use crate::error::AttestError;
use crate::tee::TeeType;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Where configfs-tsm report entries are created.
pub const TSM_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";

const ATTEMPTS: usize = 3;

/// Produces SEV-SNP reports or TDX quotes through one configfs-tsm report entry, created
/// when opened and removed when dropped. Reusing the entry is safe: `generation` detects
/// any concurrent writer.
#[derive(Debug)]
pub struct TsmAttester {
    entry: Entry,
    tee: TeeType,
    lock: std::sync::Mutex<()>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> AttestError {
    AttestError::Unsupported(format!("configfs-tsm: cannot {what} {}: {e}", show(path)))
}

/// A report entry directory, removed (if we created it) when dropped.
#[derive(Debug)]
struct Entry {
    dir: PathBuf,
    created: bool,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

impl TsmAttester {
    /// Creates a uniquely named entry under `report_dir` (normally [`TSM_REPORT_DIR`]) and asks
    /// the kernel which provider serves it.
    pub fn open(report_dir: &Path) -> Result<Self, AttestError> {
        let name = format!("cloister-{}-{:016x}", std::process::id(), rand_suffix());
        Self::open_entry(report_dir, &name)
    }

    /// Uses the entry `name` under `report_dir`, creating it if it does not exist.
    pub fn open_entry(report_dir: &Path, name: &str) -> Result<Self, AttestError> {
        let dir = report_dir.join(name);
        let created = match std::fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io("create report entry", &dir, e)),
        };
        let entry = Entry { dir, created };
        let tee = read_provider(&entry.dir)?;
        Ok(Self {
            entry,
            tee,
            lock: std::sync::Mutex::new(()),
        })
    }

    /// The entry directory in use.
    pub fn entry_dir(&self) -> &Path {
        &self.entry.dir
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

fn read_provider(entry: &Path) -> Result<TeeType, AttestError> {
    let path = entry.join("provider");
    let text = std::fs::read_to_string(&path).map_err(|e| io("read", &path, e))?;
    match text.trim() {
        "sev_guest" => Ok(TeeType::SevSnp),
        "tdx_guest" => Ok(TeeType::Tdx),
        other => Err(AttestError::Unsupported(format!(
            "configfs-tsm provider `{other}`"
        ))),
    }
}

fn read_generation(entry: &Path) -> Result<u64, AttestError> {
    let path = entry.join("generation");
    let text = std::fs::read_to_string(&path).map_err(|e| io("read", &path, e))?;
    text.trim().parse().map_err(|_| {
        AttestError::Unsupported(format!("configfs-tsm: {} is not a number", show(&path)))
    })
}

impl Attester for TsmAttester {
    fn tee(&self) -> TeeType {
        self.tee
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Produced, AttestError> {
        // One request at a time through our entry; other processes are caught by `generation`.
        let _guard = self
            .lock
            .lock()
            .map_err(|_| AttestError::Unsupported("configfs-tsm lock poisoned".into()))?;
        let entry = &self.entry.dir;
        for _ in 0..ATTEMPTS {
            let before = read_generation(entry)?;
            let inblob = entry.join("inblob");
            std::fs::write(&inblob, report_data).map_err(|e| io("write", &inblob, e))?;
            let outblob = entry.join("outblob");
            let evidence = std::fs::read(&outblob).map_err(|e| io("read", &outblob, e))?;
            let aux = match std::fs::read(entry.join("auxblob")) {
                Ok(bytes) if !bytes.is_empty() => Some(bytes),
                _ => None,
            };
            let after = read_generation(entry)?;
            if after == before.wrapping_add(1) {
                if evidence.is_empty() {
                    return Err(AttestError::Unsupported(format!(
                        "configfs-tsm: {} is empty",
                        show(&outblob)
                    )));
                }
                return Ok(Produced {
                    tee: self.tee,
                    evidence,
                    aux,
                });
            }
        }
        Err(AttestError::Unsupported(format!(
            "configfs-tsm: entry {} was written concurrently {ATTEMPTS} times; giving up",
            show(entry)
        )))
    }
}
