//! Intel PCS/PCCS (v4 API): PCK CRL, TCB info, QE identity and root CA CRL for a quote.

use super::{Fetched, Fetcher, HttpResponse};
use crate::dcap::DcapQuote;
use crate::error::AttestError;
use crate::x509::UnixSecs;
use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct TcbInfoResponse<'a> {
    #[serde(rename = "tcbInfo", borrow)]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct QeIdentityResponse<'a> {
    #[serde(rename = "enclaveIdentity", borrow)]
    enclave_identity: &'a RawValue,
    signature: String,
}

/// The URL-encoded PEM issuer chain carried in one of `names` (PCS headers differ by version).
fn issuer_chain(resp: &HttpResponse, url: &str, names: &[&str]) -> Result<String, AttestError> {
    let raw = names.iter().find_map(|n| resp.header(n)).ok_or_else(|| {
        AttestError::Collateral(format!("{url}: response has no {} header", names[0]))
    })?;
    urlencoding::decode(raw)
        .map(|s| s.into_owned())
        .map_err(|e| {
            AttestError::Collateral(format!("{url}: {} is not URL-encoded: {e}", names[0]))
        })
}

/// A signed JSON document (`{"<key>": {...}, "signature": "<hex>"}`) as exact signed bytes.
fn signed_json(
    resp: &HttpResponse,
    url: &str,
    tcb: bool,
) -> Result<(String, Vec<u8>), AttestError> {
    let bad = |e: String| AttestError::Collateral(format!("{url}: {e}"));
    let (body, signature) = if tcb {
        let r: TcbInfoResponse =
            serde_json::from_slice(&resp.body).map_err(|e| bad(e.to_string()))?;
        (r.tcb_info.get().to_owned(), r.signature)
    } else {
        let r: QeIdentityResponse =
            serde_json::from_slice(&resp.body).map_err(|e| bad(e.to_string()))?;
        (r.enclave_identity.get().to_owned(), r.signature)
    };
    let signature =
        hex::decode(signature).map_err(|e| bad(format!("signature is not hex: {e}")))?;
    Ok((body, signature))
}

impl Fetcher {
    fn pcs_url(&self, tee: &str, path: &str) -> String {
        format!(
            "{}/{tee}/certification/v4/{path}",
            self.endpoints.intel_pcs.trim_end_matches('/')
        )
    }

    /// Fetches the collateral for `quote`'s FMSPC and PCK CA (all items required).
    pub fn dcap_collateral(
        &self,
        quote: &DcapQuote,
        now: UnixSecs,
    ) -> Result<Fetched<QuoteCollateralV3>, AttestError> {
        let q = quote.quote();
        let fmspc = dcap_qvl::intel::quote_fmspc(q).map_err(|e| {
            AttestError::Collateral(format!(
                "cannot read the FMSPC from the quote's PCK certificate: {e:#}"
            ))
        })?;
        let ca = dcap_qvl::intel::quote_ca(q)
            .map_err(|e| AttestError::Collateral(format!("cannot classify the PCK CA: {e:#}")))?
            .as_id_str();
        let tee = if q.header.is_sgx() { "sgx" } else { "tdx" };
        let (mut sources, mut warnings) = (Vec::new(), Vec::new());

        let url = self.pcs_url("sgx", &format!("pckcrl?ca={ca}&encoding=der"));
        let resp = self.get(&url, true, now, &mut sources, &mut warnings)?;
        let pck_crl_issuer_chain = issuer_chain(&resp, &url, &["SGX-PCK-CRL-Issuer-Chain"])?;
        let pck_crl = resp.body;

        let url = self.pcs_url(tee, &format!("tcb?fmspc={}", hex::encode(fmspc)));
        let resp = self.get(&url, true, now, &mut sources, &mut warnings)?;
        let tcb_info_issuer_chain = issuer_chain(
            &resp,
            &url,
            &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
        )?;
        let (tcb_info, tcb_info_signature) = signed_json(&resp, &url, true)?;

        let url = self.pcs_url(tee, "qe/identity");
        let resp = self.get(&url, true, now, &mut sources, &mut warnings)?;
        let qe_identity_issuer_chain =
            issuer_chain(&resp, &url, &["SGX-Enclave-Identity-Issuer-Chain"])?;
        let (qe_identity, qe_identity_signature) = signed_json(&resp, &url, false)?;

        let url = self.endpoints.intel_root_crl.clone();
        let root_ca_crl = self.get(&url, true, now, &mut sources, &mut warnings)?.body;

        Ok(Fetched {
            value: QuoteCollateralV3 {
                pck_crl_issuer_chain,
                root_ca_crl,
                pck_crl,
                tcb_info_issuer_chain,
                tcb_info,
                tcb_info_signature,
                qe_identity_issuer_chain,
                qe_identity,
                qe_identity_signature,
                pck_certificate_chain: None,
            },
            sources,
            warnings,
        })
    }
}
