//! Evidence of the TEE kinds this client checks, against the platform roots its trust
//! settings pin: `sim` (the labelled simulated TEE, chained to the platform's own root) and
//! `nitro` (AWS Nitro Enclaves, chained to AWS's root certificate). SEV-SNP and TDX evidence
//! needs the vendors' collateral, which this client does not fetch: it is refused by name.
//!
//! Bundles (`attestation`) and receipt signers (`receipt`) both go through
//! [`verify_evidence`], so a TEE kind is supported by both or by neither.

use cloister_attest::claims::TeeDetail;
use cloister_attest::nitro::{NitroDocument, NitroVerifier};
use cloister_attest::roots::TrustStore;
use cloister_attest::sim::{SimEvidence, SimVerifier};
use cloister_attest::{Collateral, Verifier};

/// The TEE kinds whose evidence this client verifies.
pub const SUPPORTED_TEES: [&str; 2] = ["sim", "nitro"];

/// Evidence that verified at a given time against a pinned root.
#[derive(Debug, Clone)]
pub struct CheckedEvidence {
    /// Human label of the TEE (`sim (no hardware protection)`, `AWS Nitro Enclaves`...).
    pub tee_label: String,
    /// The measured build (hex): the sim measurement, or a Nitro enclave's PCR0.
    pub measurement: String,
    /// The 64 bytes the evidence binds: the sim report data, or a Nitro document's
    /// `user_data` when it is 64 bytes long.
    pub report_data: Option<[u8; 64]>,
    /// The role simulated evidence names; hardware evidence names none.
    pub role: Option<String>,
    /// When the evidence was produced (Unix seconds), as it states.
    pub produced_at: Option<i64>,
    /// The first expiry in its chain (Unix seconds): it verifies up to then.
    pub valid_until: i64,
    /// SHA-256 fingerprint (hex) of the pinned root it chains to.
    pub root_fingerprint: String,
}

/// Why evidence is not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// A TEE kind this client cannot check.
    #[error(
        "this client verifies sim and nitro evidence, not `{0}` (SEV-SNP and TDX need the \
         vendors' collateral, which it does not fetch)"
    )]
    UnsupportedTee(String),
    /// Not decodable.
    #[error("malformed evidence: {0}")]
    Malformed(String),
    /// It chains to a root the settings do not pin.
    #[error("the evidence chains to root {found}, which is not pinned ({pinned})")]
    RootNotTrusted {
        /// The fingerprint presented.
        found: String,
        /// The fingerprints pinned, comma-separated.
        pinned: String,
    },
    /// A signature, a certificate or a validity period failed.
    #[error("the evidence is not authentic: {0}")]
    NotAuthentic(#[from] cloister_attest::AttestError),
    /// A Nitro enclave in debug mode: the host can read its memory.
    #[error("the Nitro enclave runs in debug mode (PCR0-2 are zero): its memory is readable")]
    DebugMode,
}

fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

fn pinned(roots: &[String], fp: &str) -> bool {
    roots.iter().any(|r| r.trim().eq_ignore_ascii_case(fp))
}

fn not_pinned(found: String, roots: &[String]) -> EvidenceError {
    EvidenceError::RootNotTrusted {
        found,
        pinned: roots
            .iter()
            .map(|r| r.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The root a piece of evidence presents (hex SHA-256), unverified: what trust on first use
/// pins, and what an error names.
pub fn presented_root(tee: &str, evidence: &[u8]) -> Result<String, EvidenceError> {
    match tee {
        "sim" => Ok(fingerprint(&SimEvidence::parse(evidence)?.platform_cert)),
        "nitro" => {
            let doc = NitroDocument::parse(evidence)?;
            // cabundle starts at the root (AWS documentation).
            let root = doc
                .cabundle
                .first()
                .ok_or_else(|| EvidenceError::Malformed("the cabundle is empty".into()))?;
            Ok(fingerprint(root))
        }
        other => Err(EvidenceError::UnsupportedTee(other.to_owned())),
    }
}

/// When the evidence says it was produced (Unix seconds), unverified: the time an offline
/// check verifies it at.
pub fn produced_at(tee: &str, evidence: &[u8]) -> Result<i64, EvidenceError> {
    let ms = match tee {
        "sim" => SimEvidence::parse(evidence)?.timestamp_ms,
        "nitro" => NitroDocument::parse(evidence)?.detail.timestamp_ms,
        other => return Err(EvidenceError::UnsupportedTee(other.to_owned())),
    };
    i64::try_from(ms / 1000).map_err(|_| EvidenceError::Malformed("timestamp out of range".into()))
}

/// Verifies `evidence` of kind `tee` at `at` (Unix seconds) against any of `roots` (hex
/// SHA-256 fingerprints of root certificates).
pub fn verify_evidence(
    tee: &str,
    evidence: &[u8],
    roots: &[String],
    at: i64,
) -> Result<CheckedEvidence, EvidenceError> {
    match tee {
        "sim" => {
            let ev = SimEvidence::parse(evidence)?;
            let found = fingerprint(&ev.platform_cert);
            if !pinned(roots, &found) {
                return Err(not_pinned(found, roots));
            }
            let verified = SimVerifier::pinning(&ev.platform_cert)?.verify(
                evidence,
                &Collateral::default(),
                at,
            )?;
            let claims = verified.claims();
            Ok(CheckedEvidence {
                tee_label: claims.tee.label().to_owned(),
                measurement: hex::encode(&claims.measurement.0),
                report_data: claims
                    .report_data
                    .as_ref()
                    .and_then(|rd| <[u8; 64]>::try_from(rd.0.as_slice()).ok()),
                role: Some(ev.role),
                produced_at: claims.timestamp,
                valid_until: verified.valid_until(),
                root_fingerprint: found,
            })
        }
        "nitro" => {
            // Only AWS's root can anchor a Nitro chain, and only when the settings pin it.
            let anchors: Vec<_> = TrustStore::builtin()?
                .nitro
                .into_iter()
                .filter(|a| pinned(roots, &fingerprint(a.cert.der())))
                .collect();
            if anchors.is_empty() {
                return Err(not_pinned(presented_root(tee, evidence)?, roots));
            }
            let verified =
                NitroVerifier::new(anchors).verify(evidence, &Collateral::default(), at)?;
            let claims = verified.claims();
            if claims.debug {
                return Err(EvidenceError::DebugMode);
            }
            let TeeDetail::Nitro(detail) = &claims.detail else {
                return Err(EvidenceError::Malformed("not a Nitro document".into()));
            };
            let root_fingerprint = verified
                .chain()
                .last()
                .map(|c| c.sha256.clone())
                .unwrap_or_default();
            Ok(CheckedEvidence {
                tee_label: claims.tee.label().to_owned(),
                measurement: hex::encode(&claims.measurement.0),
                report_data: detail
                    .user_data
                    .as_ref()
                    .and_then(|u| <[u8; 64]>::try_from(u.0.as_slice()).ok()),
                role: None,
                produced_at: claims.timestamp,
                valid_until: verified.valid_until(),
                root_fingerprint,
            })
        }
        other => Err(EvidenceError::UnsupportedTee(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const NITRO_ROOT: &str = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";
    /// Real documents from AWS hardware (crates/cloister-attest/testdata/nitro/README.md).
    const PROD: &[u8] =
        include_bytes!("../../cloister-attest/testdata/nitro/nitro_evervault_2022-10-13_prod.cbor");
    const DEBUG_B64: &str = include_str!(
        "../../cloister-attest/testdata/nitro/nitro_evervault_2023-09-18_debug.cbor.b64"
    );
    /// 2022-10-13T09:00:00Z, inside the production document's chain validity.
    const PROD_AT: i64 = 1_665_651_600;
    /// 2023-09-18T15:05:00Z, inside the debug document's.
    const DEBUG_AT: i64 = 1_695_049_500;

    #[test]
    fn a_real_nitro_document_verifies_inside_its_window_against_the_pinned_aws_root() {
        let roots = vec![NITRO_ROOT.to_owned()];
        let ev = verify_evidence("nitro", PROD, &roots, PROD_AT).unwrap();
        assert_eq!(
            ev.measurement,
            "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b"
        );
        assert_eq!(ev.root_fingerprint, NITRO_ROOT);
        assert_eq!(ev.role, None);
        assert_eq!(ev.report_data, None, "this document carries no user_data");
        assert_eq!(ev.produced_at, Some(1_665_651_482));
        assert_eq!(produced_at("nitro", PROD).unwrap(), 1_665_651_482);
        assert_eq!(presented_root("nitro", PROD).unwrap(), NITRO_ROOT);
        assert!(ev.valid_until >= PROD_AT);

        // Outside the chain's validity: a day later, and before it was issued.
        for at in [PROD_AT + 86_400, PROD_AT - 86_400] {
            assert!(matches!(
                verify_evidence("nitro", PROD, &roots, at),
                Err(EvidenceError::NotAuthentic(_))
            ));
        }
        // AWS's root not pinned (only some sim root is): refused, naming what was presented.
        let e = verify_evidence("nitro", PROD, &["ab".repeat(32)], PROD_AT).unwrap_err();
        assert!(
            matches!(&e, EvidenceError::RootNotTrusted { found, .. } if found == NITRO_ROOT),
            "{e}"
        );
        // A flipped byte in the signature (the document's last bytes) fails.
        let mut bad = PROD.to_vec();
        let n = bad.len();
        bad[n - 2] ^= 1;
        assert!(verify_evidence("nitro", &bad, &roots, PROD_AT).is_err());
    }

    #[test]
    fn a_debug_enclave_and_unsupported_kinds_are_refused() {
        let debug = base64::engine::general_purpose::STANDARD
            .decode(DEBUG_B64.trim())
            .unwrap();
        let roots = vec![NITRO_ROOT.to_owned()];
        assert!(matches!(
            verify_evidence("nitro", &debug, &roots, DEBUG_AT),
            Err(EvidenceError::DebugMode)
        ));
        for tee in ["snp", "tdx", "sgx", ""] {
            assert!(matches!(
                verify_evidence(tee, PROD, &roots, PROD_AT),
                Err(EvidenceError::UnsupportedTee(_))
            ));
        }
        // Sim evidence is not a Nitro document, and the reverse.
        assert!(verify_evidence("sim", PROD, &roots, PROD_AT).is_err());
    }
}
