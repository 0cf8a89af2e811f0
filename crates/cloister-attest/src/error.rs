//! Errors returned by evidence decoding, verification and policy loading.

use thiserror::Error;

/// Why evidence could not be decoded or was not accepted as authentic.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AttestError {
    /// The evidence bytes are not a well-formed document of the expected format.
    #[error("malformed {format} evidence: {reason}")]
    Malformed {
        /// Format being decoded (`nitro`, `sev-snp`, ...).
        format: &'static str,
        /// What was wrong, with the offset or field where known.
        reason: String,
    },
    /// The evidence signature does not verify under the attesting key.
    #[error("{what} signature does not verify")]
    BadSignature {
        /// Which signature failed (document, report, quote, certificate ...).
        what: String,
    },
    /// A certificate chain is broken, expired, not yet valid or ends at an unpinned root.
    #[error("certificate chain rejected: {0}")]
    Chain(String),
    /// A certificate in the chain is listed on a CRL.
    #[error("certificate {subject} (serial {serial}) is revoked by a CRL from {issuer}")]
    Revoked {
        /// Subject of the revoked certificate.
        subject: String,
        /// Serial number of the revoked certificate, hex.
        serial: String,
        /// Issuer of the CRL.
        issuer: String,
    },
    /// Collateral (certificates, TCB info, QE identity, CRLs) is missing, invalid or stale.
    #[error("collateral rejected: {0}")]
    Collateral(String),
    /// Evidence is authentic but internally inconsistent (e.g. TCB in report vs certificate).
    #[error("inconsistent evidence: {0}")]
    Inconsistent(String),
    /// Intel DCAP quote verification failed (message from `dcap-qvl`).
    #[error("DCAP quote rejected: {0}")]
    Dcap(String),
    /// Online collateral could not be fetched from a vendor service.
    #[error("cannot fetch collateral from {url}: {reason}")]
    Fetch {
        /// The URL requested.
        url: String,
        /// Transport error or HTTP status.
        reason: String,
    },
    /// The caller asked for something this build does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl AttestError {
    /// Shorthand for [`AttestError::Malformed`].
    pub(crate) fn malformed(format: &'static str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            format,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`AttestError::BadSignature`].
    pub(crate) fn bad_signature(what: impl Into<String>) -> Self {
        Self::BadSignature { what: what.into() }
    }

    /// Stable machine-readable code for this error (used in JSON output).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed_evidence",
            Self::BadSignature { .. } => "bad_signature",
            Self::Chain(_) => "untrusted_chain",
            Self::Revoked { .. } => "revoked",
            Self::Collateral(_) => "bad_collateral",
            Self::Inconsistent(_) => "inconsistent_evidence",
            Self::Dcap(_) => "dcap_rejected",
            Self::Fetch { .. } => "collateral_unavailable",
            Self::Unsupported(_) => "unsupported",
        }
    }
}
