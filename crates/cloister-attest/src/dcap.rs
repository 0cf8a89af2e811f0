//! Intel DCAP quotes: SGX (v3) and TDX (v4/v5), verified with `dcap-qvl`.
//!
//! `dcap-qvl` checks the quote and QE report signatures, the PCK chain to the root we
//! pass it (our pinned Intel root), the TCB info and QE identity signatures, and the CRLs,
//! and computes the TCB status. Cloister adds: padding rules, collateral freshness at the
//! verification time, the common claims shape, and leaves debug and TCB-status decisions
//! to the policy so `verify` can report them.

use crate::claims::{Claims, Hex, SgxDetail, TdxDetail, TeeDetail, Verified};
use crate::error::AttestError;
use crate::input::allow_zero_padding;
use crate::tee::TeeType;
use crate::time_fmt::rfc3339;
use crate::verifier::{Collateral, Verifier};
use crate::x509::{Anchor, Cert, UnixSecs, parse_certs};
use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::{AuthData, Quote, Report};
use dcap_qvl::verify::QuoteVerifier;
use parity_scale_codec::Decode;
use std::collections::BTreeMap;

/// A decoded (not yet verified) DCAP quote.
#[derive(Debug, Clone)]
pub struct DcapQuote {
    quote: Quote,
    /// Length of the quote proper, without trailing zero padding.
    pub len: usize,
}

fn format_name(tee: TeeType) -> &'static str {
    if tee == TeeType::Tdx { "tdx" } else { "sgx" }
}

impl DcapQuote {
    /// The decoded quote.
    pub fn quote(&self) -> &Quote {
        &self.quote
    }

    /// Decodes a quote; only zero bytes may follow it.
    pub fn parse(bytes: &[u8], expected: TeeType) -> Result<Self, AttestError> {
        let format = format_name(expected);
        let mut rest = bytes;
        let quote = Quote::decode(&mut rest)
            .map_err(|e| AttestError::malformed(format, format!("cannot decode quote: {e}")))?;
        let len = bytes.len() - rest.len();
        allow_zero_padding(format, bytes, len)?;
        let actual = if quote.header.tee_type == 0x81 {
            TeeType::Tdx
        } else {
            TeeType::Sgx
        };
        if actual != expected {
            return Err(AttestError::malformed(
                format,
                format!("quote is for {actual}, not {expected}"),
            ));
        }
        // The declared authentication-data size must equal the size of its parsed contents:
        // no slack bytes may hide inside it (sizes are not covered by any signature).
        let u32_at = |o: usize| {
            bytes
                .get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let body_end = match quote.header.version {
            3 => Some(48 + 384),
            4 => Some(48 + 584),
            _ => u32_at(50)
                .and_then(|size| usize::try_from(size).ok())
                .map(|size| 48 + 6 + size),
        };
        let parsed_auth_len = match &quote.auth_data {
            AuthData::V3(d) => {
                64 + 64
                    + 384
                    + 64
                    + 2
                    + d.qe_auth_data.data.len()
                    + 6
                    + d.certification_data.body.data.len()
            }
            AuthData::V4(d) => {
                let inner = &d.qe_report_data;
                let inner_len = 384
                    + 64
                    + 2
                    + inner.qe_auth_data.data.len()
                    + 6
                    + inner.certification_data.body.data.len();
                if inner_len != d.certification_data.body.data.len() {
                    return Err(AttestError::malformed(
                        format,
                        "QE report certification data size does not match its contents",
                    ));
                }
                64 + 64 + 6 + inner_len
            }
        };
        let declared = body_end.and_then(|end| u32_at(end).map(|d| (end, d)));
        match declared {
            Some((end, d))
                if usize::try_from(d).ok() == Some(parsed_auth_len)
                    && end + 4 + parsed_auth_len == len => {}
            _ => {
                return Err(AttestError::malformed(
                    format,
                    "authentication data size does not match its contents",
                ));
            }
        }
        // Only the PCK-chain certification data (type 5, inside type 6 on v4+) is supported;
        // the type fields are not covered by a signature, so insist on them here.
        let types = match &quote.auth_data {
            AuthData::V3(d) => (5, d.certification_data.cert_type, 5),
            AuthData::V4(d) => (
                d.certification_data.cert_type,
                d.qe_report_data.certification_data.cert_type,
                6,
            ),
        };
        let ok = match &quote.auth_data {
            AuthData::V3(_) => types.1 == 5,
            AuthData::V4(_) => types.0 == 6 && types.1 == 5,
        };
        if !ok {
            return Err(AttestError::malformed(
                format,
                format!(
                    "unsupported certification data types (outer {}, inner {}); expected a PCK certificate chain",
                    types.0, types.1
                ),
            ));
        }
        Ok(Self { quote, len })
    }

    /// The claims as decoded, without verification.
    pub fn claims(&self) -> Result<Claims, AttestError> {
        let h = &self.quote.header;
        let mut svns = BTreeMap::new();
        svns.insert("qe_svn".to_owned(), u64::from(h.qe_svn));
        svns.insert("pce_svn".to_owned(), u64::from(h.pce_svn));
        match &self.quote.report {
            Report::SgxEnclave(r) => {
                svns.insert("isv_svn".to_owned(), u64::from(r.isv_svn));
                Ok(Claims {
                    tee: TeeType::Sgx,
                    platform: format!("SGX (quote v{})", h.version),
                    measurement: Hex::from_slice(&r.mr_enclave),
                    report_data: Some(Hex::from_slice(&r.report_data)),
                    // SGX ATTRIBUTES.FLAGS bit 1 is DEBUG.
                    debug: r.attributes[0] & 0x02 != 0,
                    tcb_status: None,
                    advisory_ids: Vec::new(),
                    timestamp: None,
                    svns,
                    detail: TeeDetail::Sgx(SgxDetail {
                        mr_enclave: Hex::from_slice(&r.mr_enclave),
                        mr_signer: Hex::from_slice(&r.mr_signer),
                        isv_prod_id: r.isv_prod_id,
                        isv_svn: r.isv_svn,
                        attributes: Hex::from_slice(&r.attributes),
                        cpu_svn: Hex::from_slice(&r.cpu_svn),
                    }),
                })
            }
            other => {
                let (td, platform) = match other {
                    Report::TD15(r) => (&r.base, "TDX 1.5"),
                    Report::TD15Ex(r) => (&r.base.base, "TDX 1.5"),
                    Report::TD10(r) => (r, "TDX 1.0"),
                    _ => {
                        return Err(AttestError::Unsupported("DCAP report body type".into()));
                    }
                };
                Ok(Claims {
                    tee: TeeType::Tdx,
                    platform: format!("{platform} (quote v{})", h.version),
                    measurement: Hex::from_slice(&td.mr_td),
                    report_data: Some(Hex::from_slice(&td.report_data)),
                    // TD_ATTRIBUTES bit 0 (TUD.DEBUG).
                    debug: td.td_attributes[0] & 0x01 != 0,
                    tcb_status: None,
                    advisory_ids: Vec::new(),
                    timestamp: None,
                    svns,
                    detail: TeeDetail::Tdx(Box::new(TdxDetail {
                        mr_td: Hex::from_slice(&td.mr_td),
                        rtmr0: Hex::from_slice(&td.rt_mr0),
                        rtmr1: Hex::from_slice(&td.rt_mr1),
                        rtmr2: Hex::from_slice(&td.rt_mr2),
                        rtmr3: Hex::from_slice(&td.rt_mr3),
                        mr_seam: Hex::from_slice(&td.mr_seam),
                        mr_signer_seam: Hex::from_slice(&td.mr_signer_seam),
                        td_attributes: Hex::from_slice(&td.td_attributes),
                        xfam: Hex::from_slice(&td.xfam),
                        mr_config_id: Hex::from_slice(&td.mr_config_id),
                        mr_owner: Hex::from_slice(&td.mr_owner),
                        mr_owner_config: Hex::from_slice(&td.mr_owner_config),
                        tee_tcb_svn: Hex::from_slice(&td.tee_tcb_svn),
                    })),
                })
            }
        }
    }
}

/// Accepts every claim: Cloister applies its own policy after verification.
struct AuthenticityOnly;

impl dcap_qvl::Policy for AuthenticityOnly {
    fn validate(&self, _: &dcap_qvl::QuoteClaims) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Parses the collateral JSON (keys as in `dcap-qvl`'s `QuoteCollateralV3`).
pub fn parse_collateral(json: &[u8]) -> Result<QuoteCollateralV3, AttestError> {
    serde_json::from_slice(json)
        .map_err(|e| AttestError::Collateral(format!("DCAP collateral JSON: {e}")))
}

/// Verifies SGX or TDX quotes against pinned Intel roots.
#[derive(Debug, Clone)]
pub struct DcapVerifier {
    tee: TeeType,
    anchors: Vec<Anchor>,
}

impl DcapVerifier {
    /// A verifier for `tee` (SGX or TDX) trusting exactly `anchors`.
    pub fn new(tee: TeeType, anchors: Vec<Anchor>) -> Self {
        Self { tee, anchors }
    }
}

impl Verifier for DcapVerifier {
    fn tee(&self) -> TeeType {
        self.tee
    }

    fn inspect(&self, evidence: &[u8]) -> Result<Claims, AttestError> {
        DcapQuote::parse(evidence, self.tee)?.claims()
    }

    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        now: UnixSecs,
    ) -> Result<Verified, AttestError> {
        let quote = DcapQuote::parse(evidence, self.tee)?;
        let dcap = collateral.dcap.as_ref().ok_or_else(|| {
            AttestError::Collateral("DCAP verification needs collateral (--collateral FILE)".into())
        })?;
        let now_secs = u64::try_from(now)
            .map_err(|_| AttestError::Unsupported("verification time before 1970".into()))?;
        let body = &evidence[..quote.len];
        let mut last_err = None;
        for anchor in &self.anchors {
            let verifier = QuoteVerifier::new(anchor.cert.der().to_vec()).allow_debug(true);
            match verifier.verify_with_policy(body, dcap.clone(), now_secs, &AuthenticityOnly) {
                Ok(result) => {
                    let issued = i64::try_from(result.latest_issue_date).unwrap_or(i64::MAX);
                    let expires =
                        i64::try_from(result.earliest_expiration_date).unwrap_or(i64::MAX);
                    if now < issued {
                        return Err(AttestError::Collateral(format!(
                            "collateral issued at {} is newer than the verification time {}",
                            rfc3339(issued),
                            rfc3339(now)
                        )));
                    }
                    if now > expires {
                        return Err(AttestError::Collateral(format!(
                            "collateral expired at {} (verification time {})",
                            rfc3339(expires),
                            rfc3339(now)
                        )));
                    }
                    let mut claims = quote.claims()?;
                    claims.tcb_status = Some(result.tcb.status.to_string());
                    claims.advisory_ids = result.tcb.advisory_ids.clone();
                    let pck = pck_chain(&quote.quote)?;
                    return Ok(Verified::new(
                        claims,
                        anchor.name.clone(),
                        pck.iter().map(Cert::summary).collect(),
                        now,
                        expires,
                        body,
                    ));
                }
                Err(e) => last_err = Some(format!("{e:#}")),
            }
        }
        Err(AttestError::Dcap(
            last_err.unwrap_or_else(|| "no Intel root is configured".into()),
        ))
    }
}

/// The PCK certificate chain embedded in the quote, for reporting.
fn pck_chain(quote: &Quote) -> Result<Vec<Cert>, AttestError> {
    let raw = quote
        .raw_cert_chain()
        .map_err(|e| AttestError::malformed("dcap", format!("PCK chain: {e}")))?;
    parse_certs(raw)
}
