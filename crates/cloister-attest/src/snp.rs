//! AMD SEV-SNP attestation reports (versions 2 and later).
//!
//! The report is decoded with the `sev` crate; the signature is checked over the exact
//! signed bytes `[0, 0x2A0)`. The VCEK (or VLEK) must chain through the ASK (or ASVK) of a
//! known product line to its pinned ARK, and the TCB and chip id it certifies must equal
//! the ones in the report.

use crate::claims::{Claims, Hex, SnpDetail, SnpPolicyBits, SnpTcb, TeeDetail, Verified};
use crate::error::AttestError;
use crate::input::{SNP_REPORT_LEN, allow_zero_padding};
use crate::roots::AmdProduct;
use crate::tee::TeeType;
use crate::verifier::{Collateral, Verifier};
use crate::x509::{Cert, UnixSecs, VerifiedChain, verify_chain, verify_p384_raw};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::TcbVersion;
use sev::parser::ByteParser;
use std::collections::BTreeMap;
use x509_cert::der::Decode;
use x509_cert::der::asn1::Ia5String;
use x509_cert::der::oid::ObjectIdentifier;

const FORMAT: &str = "sev-snp";
/// End of the signed part of the report.
const SIGNED_LEN: usize = 0x2A0;
const OID_PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");

/// A decoded (not yet verified) SEV-SNP report.
#[derive(Debug, Clone)]
pub struct SnpReport {
    raw: Vec<u8>,
    report: AttestationReport,
}

fn tcb(t: &TcbVersion) -> SnpTcb {
    SnpTcb {
        fmc: t.fmc,
        bootloader: t.bootloader,
        tee: t.tee,
        snp: t.snp,
        microcode: t.microcode,
    }
}

impl SnpReport {
    /// Decodes a report; bytes after the 1184-byte report must be zero padding.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        let body = bytes.get(..SNP_REPORT_LEN).ok_or_else(|| {
            AttestError::malformed(
                FORMAT,
                format!("report is {} bytes, expected {SNP_REPORT_LEN}", bytes.len()),
            )
        })?;
        allow_zero_padding(FORMAT, bytes, SNP_REPORT_LEN)?;
        let report = AttestationReport::from_bytes(body)
            .map_err(|e| AttestError::malformed(FORMAT, format!("cannot decode report: {e}")))?;
        if report.version < 2 {
            return Err(AttestError::malformed(
                FORMAT,
                format!("report version {} is not supported", report.version),
            ));
        }
        if report.sig_algo != 1 {
            return Err(AttestError::malformed(
                FORMAT,
                format!(
                    "signature algorithm {} is not ECDSA P-384 with SHA-384",
                    report.sig_algo
                ),
            ));
        }
        // The signature area is R (72) || S (72) || reserved; reserved bytes must be zero
        // because the signature does not cover them.
        if let Some(i) = body[SIGNED_LEN + 144..].iter().position(|b| *b != 0) {
            return Err(AttestError::malformed(
                FORMAT,
                format!(
                    "reserved byte at offset {:#x} after the signature is not zero",
                    SIGNED_LEN + 144 + i
                ),
            ));
        }
        Ok(Self {
            raw: body.to_vec(),
            report,
        })
    }

    /// The decoded report.
    pub fn report(&self) -> &AttestationReport {
        &self.report
    }

    /// The product line named by the report's CPUID fields (reports v3+), if Cloister knows it.
    pub fn product_line(&self) -> Option<&'static str> {
        let r = &self.report;
        match sev::Generation::identify_cpu(r.cpuid_fam_id?, r.cpuid_mod_id?).ok()? {
            sev::Generation::Milan => Some("Milan"),
            sev::Generation::Genoa => Some("Genoa"),
            sev::Generation::Turin => Some("Turin"),
            _ => None,
        }
    }

    fn signing_key(&self) -> Result<&'static str, AttestError> {
        match self.report.key_info.signing_key() {
            0 => Ok("vcek"),
            1 => Ok("vlek"),
            other => Err(AttestError::malformed(
                FORMAT,
                format!("report is not signed (signing key {other})"),
            )),
        }
    }

    /// The claims as decoded, without verification; `platform` names the product line if known.
    pub fn claims(&self, platform: &str) -> Claims {
        let r = &self.report;
        let policy = SnpPolicyBits {
            raw: u64::from(r.policy),
            debug: r.policy.debug_allowed(),
            migrate_ma: r.policy.migrate_ma_allowed(),
            smt: r.policy.smt_allowed(),
            single_socket: r.policy.single_socket_required(),
        };
        let reported = tcb(&r.reported_tcb);
        let mut svns = BTreeMap::new();
        svns.insert("guest_svn".to_owned(), u64::from(r.guest_svn));
        svns.insert("tcb_bootloader".to_owned(), u64::from(reported.bootloader));
        svns.insert("tcb_tee".to_owned(), u64::from(reported.tee));
        svns.insert("tcb_snp".to_owned(), u64::from(reported.snp));
        svns.insert("tcb_microcode".to_owned(), u64::from(reported.microcode));
        Claims {
            tee: TeeType::SevSnp,
            platform: platform.to_owned(),
            measurement: Hex::from_slice(&r.measurement),
            report_data: Some(Hex::from_slice(&r.report_data)),
            debug: policy.debug,
            tcb_status: None,
            advisory_ids: Vec::new(),
            timestamp: None,
            svns,
            detail: TeeDetail::SevSnp(Box::new(SnpDetail {
                version: r.version,
                guest_svn: r.guest_svn,
                policy,
                vmpl: r.vmpl,
                signing_key: self.signing_key().unwrap_or("none").to_owned(),
                host_data: Hex::from_slice(&r.host_data),
                family_id: Hex::from_slice(&r.family_id),
                image_id: Hex::from_slice(&r.image_id),
                id_key_digest: Hex::from_slice(&r.id_key_digest),
                author_key_digest: Hex::from_slice(&r.author_key_digest),
                reported_tcb: reported,
                current_tcb: tcb(&r.current_tcb),
                committed_tcb: tcb(&r.committed_tcb),
                launch_tcb: tcb(&r.launch_tcb),
                chip_id: Hex::from_slice(&r.chip_id),
            })),
        }
    }

    /// Checks the report signature with the attesting key's SPKI.
    fn verify_signature(&self, key: &Cert) -> Result<(), AttestError> {
        // R and S are 72-byte little-endian fields; P-384 scalars use the low 48 bytes.
        let scalar = |offset: usize| -> Result<Vec<u8>, AttestError> {
            let field = &self.raw[offset..offset + 72];
            if field[48..].iter().any(|b| *b != 0) {
                return Err(AttestError::bad_signature(
                    "report (scalar wider than P-384)",
                ));
            }
            Ok(field[..48].iter().rev().copied().collect())
        };
        let (r, s) = (scalar(SIGNED_LEN)?, scalar(SIGNED_LEN + 72)?);
        let spki = &key.parsed().tbs_certificate.subject_public_key_info;
        verify_p384_raw(
            spki.subject_public_key.raw_bytes(),
            &self.raw[..SIGNED_LEN],
            &r,
            &s,
        )
        .map_err(|e| AttestError::bad_signature(format!("report ({e})")))
    }
}

/// Verifies SEV-SNP reports against the pinned AMD roots of each product line.
#[derive(Debug, Clone)]
pub struct SnpVerifier {
    products: Vec<AmdProduct>,
}

impl SnpVerifier {
    /// A verifier trusting exactly `products`.
    pub fn new(products: Vec<AmdProduct>) -> Self {
        Self { products }
    }

    /// Splits supplied certificates into the attesting key and checks supplied CA certs are pinned.
    fn pick_leaf(&self, certs: &[Cert]) -> Result<Cert, AttestError> {
        let mut leaves = Vec::new();
        for cert in certs {
            if cert.ca_constraint()?.is_some() {
                let known = self.products.iter().any(|p| {
                    p.ark.cert.fingerprint() == cert.fingerprint()
                        || p.ask.fingerprint() == cert.fingerprint()
                        || p.asvk
                            .as_ref()
                            .is_some_and(|a| a.fingerprint() == cert.fingerprint())
                });
                if !known {
                    return Err(AttestError::Chain(format!(
                        "supplied CA certificate `{}` (sha256 {}) does not match any embedded AMD ARK/ASK",
                        cert.subject(),
                        hex::encode(cert.fingerprint())
                    )));
                }
            } else {
                leaves.push(cert.clone());
            }
        }
        match leaves.len() {
            1 => Ok(leaves.remove(0)),
            0 => Err(AttestError::Collateral(
                "SEV-SNP verification needs the VCEK or VLEK certificate (--cert)".into(),
            )),
            n => Err(AttestError::Collateral(format!(
                "{n} VCEK/VLEK certificates supplied, expected one"
            ))),
        }
    }

    fn chain_for(
        &self,
        leaf: &Cert,
        vlek: bool,
        collateral: &Collateral,
        now: UnixSecs,
    ) -> Result<(String, VerifiedChain), AttestError> {
        let mut last_err = None;
        for product in &self.products {
            let intermediate = if vlek {
                product.asvk.as_ref()
            } else {
                Some(&product.ask)
            };
            let Some(intermediate) = intermediate else {
                continue;
            };
            if !leaf.issued_by_name(intermediate) {
                continue;
            }
            let path = [leaf.clone(), intermediate.clone()];
            match verify_chain(
                &path,
                std::slice::from_ref(&product.ark),
                now,
                &collateral.crls,
            ) {
                Ok(chain) => return Ok((product.product.clone(), chain)),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            AttestError::Chain(format!(
                "`{}` is not issued by the {} of any known product line",
                leaf.issuer(),
                if vlek { "ASVK" } else { "ASK" }
            ))
        }))
    }
}

fn ext<T: for<'a> Decode<'a>>(
    cert: &Cert,
    oid: &ObjectIdentifier,
    name: &str,
) -> Result<Option<T>, AttestError> {
    cert.extension(oid)
        .map(|raw| {
            T::from_der(raw)
                .map_err(|e| AttestError::Chain(format!("bad {name} extension in VCEK: {e}")))
        })
        .transpose()
}

/// Checks that the TCB and chip id certified by the VCEK/VLEK match the report.
fn check_key_matches_report(
    key: &Cert,
    report: &AttestationReport,
    vlek: bool,
) -> Result<(), AttestError> {
    let reported = &report.reported_tcb;
    let spl = [
        ("bootloader", OID_BL_SPL, Some(reported.bootloader)),
        ("tee", OID_TEE_SPL, Some(reported.tee)),
        ("snp", OID_SNP_SPL, Some(reported.snp)),
        ("microcode", OID_UCODE_SPL, Some(reported.microcode)),
        ("fmc", OID_FMC_SPL, reported.fmc),
    ];
    for (name, oid, in_report) in spl {
        let in_cert: Option<u8> = ext(key, &oid, name)?;
        if in_cert != in_report && !(in_cert.is_none() && name == "fmc") {
            return Err(AttestError::Inconsistent(format!(
                "reported TCB {name} SVN {in_report:?} differs from the signing key's {in_cert:?}"
            )));
        }
    }
    if !vlek {
        // hwID holds the raw chip id bytes (64 on Milan/Genoa, 8 on Turin), not a DER value.
        let hw = key
            .extension(&OID_HW_ID)
            .ok_or_else(|| AttestError::Inconsistent("VCEK has no hwID extension".into()))?;
        if hw.is_empty() || report.chip_id.get(..hw.len()) != Some(hw) {
            return Err(AttestError::Inconsistent(
                "report chip id differs from the VCEK hwID".into(),
            ));
        }
    }
    Ok(())
}

impl Verifier for SnpVerifier {
    fn tee(&self) -> TeeType {
        TeeType::SevSnp
    }

    fn inspect(&self, evidence: &[u8]) -> Result<Claims, AttestError> {
        let report = SnpReport::parse(evidence)?;
        Ok(report.claims("unknown (not verified)"))
    }

    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        now: UnixSecs,
    ) -> Result<Verified, AttestError> {
        let report = SnpReport::parse(evidence)?;
        let vlek = report.signing_key()? == "vlek";
        let leaf = self.pick_leaf(&collateral.certs)?;
        let (product, chain) = self.chain_for(&leaf, vlek, collateral, now)?;
        report.verify_signature(&leaf)?;
        check_key_matches_report(&leaf, report.report(), vlek)?;
        let mut claims = report.claims(&product);
        if let Some(name) = ext::<Ia5String>(&leaf, &OID_PRODUCT_NAME, "productName")? {
            claims.platform = format!("{product} ({name})");
        }
        Ok(Verified::from_chain(claims, &chain, now, evidence))
    }
}
