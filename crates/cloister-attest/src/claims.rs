//! What evidence says about the attested environment: decoded claims, and the verified result.

use crate::tee::TeeType;
use crate::x509::{CertSummary, UnixSecs};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// Bytes that serialize as lowercase hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hex(pub Vec<u8>);

impl Hex {
    /// Copies `bytes` into a hex-serialized value.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// Lowercase hex text.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// Whether every byte is zero (e.g. a debug-mode Nitro PCR).
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// Decoded claims of one piece of evidence. On their own they prove nothing: only a
/// [`Verified`] (from a `Verifier`) means the claims were signed by a trusted root.
#[derive(Debug, Clone, Serialize)]
pub struct Claims {
    /// TEE family.
    pub tee: TeeType,
    /// Platform within the family (e.g. `Milan`, `Genoa`, `TDX 1.0`, `AWS Nitro`).
    pub platform: String,
    /// The measurement that allowlists match (Nitro PCR0, SNP MEASUREMENT, SGX MRENCLAVE, TDX MRTD, sim measurement).
    pub measurement: Hex,
    /// Caller-chosen data bound into the evidence (SNP/SGX/TDX REPORT_DATA, sim report_data).
    pub report_data: Option<Hex>,
    /// Whether the environment runs in debug mode (memory readable by the host).
    pub debug: bool,
    /// TCB status where the format has one (DCAP: `UpToDate`, `OutOfDate`, ...).
    pub tcb_status: Option<String>,
    /// Security advisories that apply to this platform's TCB (DCAP).
    pub advisory_ids: Vec<String>,
    /// When the evidence was produced, Unix seconds, if the format carries a timestamp.
    pub timestamp: Option<UnixSecs>,
    /// Security version numbers that policies can require minimums for (names per format).
    pub svns: BTreeMap<String, u64>,
    /// Format-specific fields (every PCR, RTMRs, policy bits, chip id ...).
    #[serde(flatten)]
    pub detail: TeeDetail,
}

/// Format-specific claims.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum TeeDetail {
    /// AWS Nitro attestation document fields.
    Nitro(NitroDetail),
    /// AMD SEV-SNP attestation report fields.
    SevSnp(Box<SnpDetail>),
    /// Intel SGX enclave report fields.
    Sgx(SgxDetail),
    /// Intel TDX TD report fields.
    Tdx(Box<TdxDetail>),
    /// Cloister simulated TEE fields.
    Sim(SimDetail),
}

/// AWS Nitro document fields.
#[derive(Debug, Clone, Serialize)]
pub struct NitroDetail {
    /// Enclave module id.
    pub module_id: String,
    /// Digest algorithm of the PCRs (`SHA384`).
    pub digest: String,
    /// Document timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Every PCR by index.
    pub pcrs: BTreeMap<u8, Hex>,
    /// Optional user data.
    pub user_data: Option<Hex>,
    /// Optional nonce.
    pub nonce: Option<Hex>,
    /// Optional public key.
    pub public_key: Option<Hex>,
}

/// A decoded SEV-SNP TCB version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SnpTcb {
    /// FMC SVN (Turin and later).
    pub fmc: Option<u8>,
    /// PSP bootloader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode patch level.
    pub microcode: u8,
}

/// SEV-SNP guest policy bits that matter for trust.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SnpPolicyBits {
    /// Raw 64-bit policy.
    pub raw: u64,
    /// DEBUG_ALLOWED.
    pub debug: bool,
    /// MIGRATE_MA_ALLOWED.
    pub migrate_ma: bool,
    /// SMT_ALLOWED.
    pub smt: bool,
    /// SINGLE_SOCKET_REQUIRED.
    pub single_socket: bool,
}

/// SEV-SNP report fields.
#[derive(Debug, Clone, Serialize)]
pub struct SnpDetail {
    /// Report format version.
    pub version: u32,
    /// Guest SVN.
    pub guest_svn: u32,
    /// Guest policy.
    pub policy: SnpPolicyBits,
    /// VMPL that requested the report.
    pub vmpl: u32,
    /// Key that signed the report (`vcek` or `vlek`).
    pub signing_key: String,
    /// Data supplied by the hypervisor at launch.
    pub host_data: Hex,
    /// Family id from the ID block.
    pub family_id: Hex,
    /// Image id from the ID block.
    pub image_id: Hex,
    /// SHA-384 of the ID key.
    pub id_key_digest: Hex,
    /// SHA-384 of the author key.
    pub author_key_digest: Hex,
    /// TCB the signing key was derived for.
    pub reported_tcb: SnpTcb,
    /// Current TCB.
    pub current_tcb: SnpTcb,
    /// Committed TCB.
    pub committed_tcb: SnpTcb,
    /// TCB at launch.
    pub launch_tcb: SnpTcb,
    /// Chip id (zero if masked).
    pub chip_id: Hex,
}

/// SGX enclave report fields.
#[derive(Debug, Clone, Serialize)]
pub struct SgxDetail {
    /// MRENCLAVE.
    pub mr_enclave: Hex,
    /// MRSIGNER.
    pub mr_signer: Hex,
    /// ISV product id.
    pub isv_prod_id: u16,
    /// ISV SVN.
    pub isv_svn: u16,
    /// Enclave attributes (flags || xfrm).
    pub attributes: Hex,
    /// CPU SVN.
    pub cpu_svn: Hex,
}

/// TDX TD report fields.
#[derive(Debug, Clone, Serialize)]
pub struct TdxDetail {
    /// MRTD (initial TD contents).
    pub mr_td: Hex,
    /// Runtime measurement register 0.
    pub rtmr0: Hex,
    /// Runtime measurement register 1.
    pub rtmr1: Hex,
    /// Runtime measurement register 2.
    pub rtmr2: Hex,
    /// Runtime measurement register 3.
    pub rtmr3: Hex,
    /// MRSEAM (TDX module).
    pub mr_seam: Hex,
    /// MRSIGNERSEAM.
    pub mr_signer_seam: Hex,
    /// TD attributes.
    pub td_attributes: Hex,
    /// XFAM.
    pub xfam: Hex,
    /// MRCONFIGID.
    pub mr_config_id: Hex,
    /// MROWNER.
    pub mr_owner: Hex,
    /// MROWNERCONFIG.
    pub mr_owner_config: Hex,
    /// TEE TCB SVN.
    pub tee_tcb_svn: Hex,
}

/// Simulated TEE fields.
#[derive(Debug, Clone, Serialize)]
pub struct SimDetail {
    /// Role the evidence was produced for.
    pub role: String,
    /// SHA-256 fingerprint of the sim platform root.
    pub sim_root: Hex,
}

/// Claims that a verifier checked: signatures, chain to a pinned root, validity at a time.
///
/// Only verifiers construct this type; holding one means the evidence is authentic.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    claims: Claims,
    anchor: String,
    chain: Vec<CertSummary>,
    verified_at: UnixSecs,
    valid_until: UnixSecs,
    evidence_sha256: Hex,
}

impl Verified {
    /// Builds a verified result; crate-private so nothing else can mint one.
    pub(crate) fn new(
        claims: Claims,
        anchor: String,
        chain: Vec<CertSummary>,
        verified_at: UnixSecs,
        valid_until: UnixSecs,
        evidence: &[u8],
    ) -> Self {
        use sha2::Digest;
        Self {
            claims,
            anchor,
            chain,
            verified_at,
            valid_until,
            evidence_sha256: Hex(sha2::Sha256::digest(evidence).to_vec()),
        }
    }

    /// Builds a verified result from a validated X.509 chain (Nitro, SEV-SNP).
    pub(crate) fn from_chain(
        claims: Claims,
        chain: &crate::x509::VerifiedChain,
        verified_at: UnixSecs,
        evidence: &[u8],
    ) -> Self {
        Self::new(
            claims,
            chain.anchor.clone(),
            chain.certs.iter().map(crate::x509::Cert::summary).collect(),
            verified_at,
            chain.valid_until,
            evidence,
        )
    }

    /// The authenticated claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// Name of the pinned root the evidence chains to.
    pub fn anchor(&self) -> &str {
        &self.anchor
    }

    /// Certificates used, leaf first.
    pub fn chain(&self) -> &[CertSummary] {
        &self.chain
    }

    /// The verification time.
    pub fn verified_at(&self) -> UnixSecs {
        self.verified_at
    }

    /// When the result stops being valid (earliest certificate/collateral expiry).
    pub fn valid_until(&self) -> UnixSecs {
        self.valid_until
    }

    /// SHA-256 of the evidence bytes.
    pub fn evidence_sha256(&self) -> &Hex {
        &self.evidence_sha256
    }
}
