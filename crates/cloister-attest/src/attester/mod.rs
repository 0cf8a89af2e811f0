//! Evidence producers that run inside a TEE, and selection of the one this machine has.
//!
//! Each provider is its own module: Nitro through the NSM device, SEV-SNP and TDX through
//! Linux configfs-tsm. The simulated provider ([`crate::sim::SimAttester`]) needs the sim
//! platform identity from the data directory, so callers build it themselves; it implements
//! the same [`Attester`] trait.

mod nsm;
mod tsm;

pub use nsm::{NSM_DEVICE, NsmAttester, NsmDevice, NsmFile};
pub use tsm::{TSM_REPORT_DIR, TsmAttester};

use crate::error::AttestError;
use crate::tee::TeeType;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Evidence as produced inside the TEE, plus any auxiliary data the platform returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    /// TEE type of the evidence.
    pub tee: TeeType,
    /// The evidence bytes (Nitro document, SNP report, DCAP quote).
    pub evidence: Vec<u8>,
    /// Auxiliary blob (SEV-SNP: the certificate table with the VCEK), if any.
    pub aux: Option<Vec<u8>>,
}

/// Produces evidence that binds 64 bytes of caller data (e.g. a TLS exporter value).
pub trait Attester: Send + Sync {
    /// The TEE type this attester produces evidence for.
    fn tee(&self) -> TeeType;

    /// Produces fresh evidence whose report data / user data is `report_data`.
    fn attest(&self, report_data: &[u8; 64]) -> Result<Produced, AttestError>;
}

/// The `tee.provider` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderChoice {
    /// Probe the machine.
    Auto,
    /// A specific provider.
    Fixed(TeeType),
}

impl FromStr for ProviderChoice {
    type Err = AttestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            other => TeeType::from_str(other).map(Self::Fixed).map_err(|_| {
                AttestError::Unsupported(format!(
                    "tee.provider `{other}` (expected auto, sim, nitro, sev-snp or tdx)"
                ))
            }),
        }
    }
}

/// Where to look for TEE interfaces; `/` on a real machine, a fake tree in tests.
#[derive(Debug, Clone)]
pub struct Probe {
    root: PathBuf,
    tsm_entry: Option<String>,
}

impl Probe {
    /// Probes the real machine.
    pub fn system() -> Self {
        Self {
            root: PathBuf::from("/"),
            tsm_entry: None,
        }
    }

    /// Probes a directory laid out like `/` (for tests).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            tsm_entry: None,
        }
    }

    /// Uses a fixed configfs-tsm entry name (a fake tree cannot create entries on `mkdir`).
    pub fn with_tsm_entry(mut self, name: &str) -> Self {
        self.tsm_entry = Some(name.to_owned());
        self
    }

    fn open_tsm(&self) -> Result<TsmAttester, AttestError> {
        let dir = self.path(TSM_REPORT_DIR);
        match &self.tsm_entry {
            Some(name) => TsmAttester::open_entry(&dir, name),
            None => TsmAttester::open(&dir),
        }
    }

    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    /// Which hardware TEE this machine offers, if any.
    pub fn detect(&self) -> Result<Option<TeeType>, AttestError> {
        if self.path(NSM_DEVICE).exists() {
            return Ok(Some(TeeType::Nitro));
        }
        let tsm = self.path(TSM_REPORT_DIR);
        if tsm.is_dir() {
            return self.open_tsm().map(|a| Some(a.tee()));
        }
        Ok(None)
    }

    /// Resolves `choice` to a provider: `auto` picks the hardware found, and never falls
    /// back to the simulator unless `allow_sim` (development) is set.
    pub fn select(&self, choice: ProviderChoice, allow_sim: bool) -> Result<TeeType, AttestError> {
        let tee = match choice {
            ProviderChoice::Fixed(tee) => tee,
            ProviderChoice::Auto => match self.detect()? {
                Some(tee) => tee,
                None if allow_sim => TeeType::Sim,
                None => {
                    return Err(AttestError::Unsupported(format!(
                        "no TEE found (looked for {NSM_DEVICE} and {TSM_REPORT_DIR}); \
                         set tee.provider: sim for development (no hardware protection)"
                    )));
                }
            },
        };
        if tee == TeeType::Sim && !allow_sim {
            return Err(AttestError::Unsupported(
                "the simulated TEE (no hardware protection) is only available in development mode"
                    .into(),
            ));
        }
        Ok(tee)
    }

    /// Builds the attester for a hardware `tee` found under this probe's root.
    pub fn attester(&self, tee: TeeType) -> Result<Box<dyn Attester>, AttestError> {
        match tee {
            TeeType::Nitro => Ok(Box::new(NsmAttester::new(NsmFile::open(&self.path(NSM_DEVICE))?))),
            TeeType::SevSnp | TeeType::Tdx => {
                let attester = self.open_tsm()?;
                let found = attester.tee();
                if found != tee {
                    return Err(AttestError::Unsupported(format!("configfs-tsm provides {found}, not {tee}")));
                }
                Ok(Box::new(attester))
            }
            TeeType::Sgx => Err(AttestError::Unsupported(
                "SGX enclaves attest through Gramine's /dev/attestation, which is not supported yet".into(),
            )),
            TeeType::Sim => Err(AttestError::Unsupported(
                "the simulated attester is created by the keyvault with its sim platform identity".into(),
            )),
        }
    }
}

/// Returns `path` as text for messages.
pub(crate) fn show(path: &Path) -> String {
    path.display().to_string()
}
