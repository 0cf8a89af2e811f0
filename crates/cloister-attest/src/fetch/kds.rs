//! AMD Key Distribution Service: VCEK certificates and product-line CRLs.

use super::{Fetched, Fetcher, is_not_found};
use crate::error::AttestError;
use crate::snp::SnpReport;
use crate::verifier::Collateral;
use crate::x509::{UnixSecs, parse_certs, parse_crls};

/// Product lines whose KDS paths and roots Cloister knows, in probing order.
const PRODUCTS: [&str; 3] = ["Milan", "Genoa", "Turin"];

impl Fetcher {
    /// The KDS URL of the VCEK that signed `report`, assuming product line `product`.
    pub fn vcek_url(&self, product: &str, report: &SnpReport) -> String {
        let r = report.report();
        let tcb = &r.reported_tcb;
        // Turin identifies chips by the first 8 bytes of the chip id and adds the FMC SPL.
        let (hwid, fmc) = if product == "Turin" {
            let fmc = format!("fmcSPL={}&", tcb.fmc.unwrap_or(0));
            (hex::encode(&r.chip_id[..8]), fmc)
        } else {
            (hex::encode(r.chip_id), String::new())
        };
        format!(
            "{}/vcek/v1/{product}/{hwid}?{fmc}blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            self.endpoints.amd_kds.trim_end_matches('/'),
            tcb.bootloader,
            tcb.tee,
            tcb.snp,
            tcb.microcode
        )
    }

    /// The KDS URL of the CRL for `product`'s ARK and ASK.
    pub fn amd_crl_url(&self, product: &str) -> String {
        format!(
            "{}/vcek/v1/{product}/crl",
            self.endpoints.amd_kds.trim_end_matches('/')
        )
    }

    /// Fetches the VCEK for `report` (required) and its product line's CRL (best effort).
    ///
    /// The product line comes from the report's CPUID fields (report v3+); for older reports
    /// each known line is tried until KDS knows the chip.
    pub fn snp_collateral(
        &self,
        report: &SnpReport,
        now: UnixSecs,
    ) -> Result<Fetched<Collateral>, AttestError> {
        if report.report().key_info.signing_key() != 0 {
            return Err(AttestError::Unsupported(
                "this report is signed by a VLEK, which AMD KDS does not serve; pass it with --cert"
                    .into(),
            ));
        }
        let candidates: Vec<&str> = match report.product_line() {
            Some(p) => vec![p],
            None => PRODUCTS.to_vec(),
        };
        let (mut sources, mut warnings) = (Vec::new(), Vec::new());
        let mut found = None;
        let mut last_err = None;
        for product in candidates {
            let url = self.vcek_url(product, report);
            match self.get(&url, false, now, &mut sources, &mut warnings) {
                Ok(resp) => {
                    found = Some((product, resp));
                    break;
                }
                Err(e) if is_not_found(&e) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        let Some((product, resp)) = found else {
            return Err(last_err.unwrap_or_else(|| {
                AttestError::Unsupported("no known AMD product line to ask KDS for".into())
            }));
        };
        let certs = parse_certs(&resp.body)
            .map_err(|e| AttestError::Collateral(format!("VCEK from AMD KDS: {e}")))?;
        let mut collateral = Collateral {
            certs,
            ..Collateral::default()
        };
        let crl_url = self.amd_crl_url(product);
        match self.get(&crl_url, true, now, &mut sources, &mut warnings) {
            Ok(resp) => {
                collateral.crls = parse_crls(&resp.body)
                    .map_err(|e| AttestError::Collateral(format!("AMD {product} CRL: {e}")))?
            }
            Err(e) => warnings.push(format!(
                "AMD {product} CRL unavailable ({e}); ASK/VCEK revocation not checked"
            )),
        }
        Ok(Fetched {
            value: collateral,
            sources,
            warnings,
        })
    }
}
