//! The kinds of Trusted Execution Environment Cloister knows.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A TEE family; the string forms are the ones used in policies, CLI flags and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TeeType {
    /// Cloister's simulated TEE (no hardware protection).
    #[serde(rename = "sim")]
    Sim,
    /// AWS Nitro Enclaves.
    #[serde(rename = "nitro")]
    Nitro,
    /// AMD SEV-SNP confidential VM.
    #[serde(rename = "sev-snp")]
    SevSnp,
    /// Intel SGX enclave (DCAP quote v3).
    #[serde(rename = "sgx")]
    Sgx,
    /// Intel TDX trust domain (DCAP quote v4/v5).
    #[serde(rename = "tdx")]
    Tdx,
}

impl TeeType {
    /// Every TEE type, in display order.
    pub const ALL: [TeeType; 5] = [Self::Sim, Self::Nitro, Self::SevSnp, Self::Sgx, Self::Tdx];

    /// The canonical lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::Nitro => "nitro",
            Self::SevSnp => "sev-snp",
            Self::Sgx => "sgx",
            Self::Tdx => "tdx",
        }
    }

    /// How this TEE type is shown to humans; the simulator is always labelled.
    pub fn label(self) -> &'static str {
        match self {
            Self::Sim => "sim (no hardware protection)",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for TeeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown TEE type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TEE type `{0}` (expected one of: sim, nitro, sev-snp, sgx, tdx)")]
pub struct UnknownTeeType(pub String);

impl FromStr for TeeType {
    type Err = UnknownTeeType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TeeType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTeeType(s.to_owned()))
    }
}
