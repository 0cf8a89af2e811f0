//! The `Verifier` trait every TEE provider implements, and the set that dispatches by format.

use crate::claims::{Claims, Verified};
use crate::dcap::DcapVerifier;
use crate::error::AttestError;
use crate::input::{Format, detect_format};
use crate::nitro::NitroVerifier;
use crate::roots::TrustStore;
use crate::snp::SnpVerifier;
use crate::tee::TeeType;
use crate::x509::{Cert, Crl, UnixSecs};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything besides the evidence that verification may need, supplied offline.
#[derive(Debug, Clone, Default)]
pub struct Collateral {
    /// Certificates (SEV-SNP: the VCEK or VLEK, optionally ASK/ARK which must be pinned ones).
    pub certs: Vec<Cert>,
    /// CRLs, checked against every link of the chain they apply to.
    pub crls: Vec<Crl>,
    /// Intel DCAP collateral (PCK CRLs, TCB info, QE identity).
    pub dcap: Option<dcap_qvl::QuoteCollateralV3>,
}

/// Checks evidence of one TEE type. Verification is pure: evidence + collateral + time → result.
pub trait Verifier: Send + Sync {
    /// The TEE type this verifier accepts.
    fn tee(&self) -> TeeType;

    /// Decodes evidence without checking anything but its structure.
    fn inspect(&self, evidence: &[u8]) -> Result<Claims, AttestError>;

    /// Checks signatures, chains and collateral at time `now`; returns the authenticated claims.
    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        now: UnixSecs,
    ) -> Result<Verified, AttestError>;
}

/// One verifier per TEE type, built from a trust store.
#[derive(Clone)]
pub struct VerifierSet {
    by_tee: BTreeMap<TeeType, Arc<dyn Verifier>>,
}

impl VerifierSet {
    /// Verifiers for every hardware TEE, trusting the anchors in `store`.
    pub fn new(store: &TrustStore) -> Self {
        let mut set = Self {
            by_tee: BTreeMap::new(),
        };
        set.insert(Arc::new(NitroVerifier::new(store.nitro.clone())));
        set.insert(Arc::new(SnpVerifier::new(store.amd.clone())));
        set.insert(Arc::new(DcapVerifier::new(
            TeeType::Sgx,
            store.intel.clone(),
        )));
        set.insert(Arc::new(DcapVerifier::new(
            TeeType::Tdx,
            store.intel.clone(),
        )));
        set
    }

    /// Adds or replaces the verifier for its TEE type (e.g. the simulated TEE).
    pub fn insert(&mut self, verifier: Arc<dyn Verifier>) {
        self.by_tee.insert(verifier.tee(), verifier);
    }

    /// The verifier for `tee`.
    pub fn get(&self, tee: TeeType) -> Result<&Arc<dyn Verifier>, AttestError> {
        self.by_tee
            .get(&tee)
            .ok_or_else(|| AttestError::Unsupported(format!("no verifier for {tee}")))
    }

    /// Resolves `format` (or detects it) to a verifier.
    pub fn for_evidence(
        &self,
        evidence: &[u8],
        format: Option<Format>,
    ) -> Result<&Arc<dyn Verifier>, AttestError> {
        let format = match format {
            Some(f) => f,
            None => detect_format(evidence)?,
        };
        self.get(format.tee())
    }
}
