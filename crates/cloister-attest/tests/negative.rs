//! Tampered, truncated, padded, re-rooted and out-of-window evidence is rejected.

mod common;
use cloister_attest::dcap::DcapQuote;
use cloister_attest::{AttestError, Collateral, TeeType, TrustStore, VerifierSet};
use common::*;

fn verify_with(
    set: &VerifierSet,
    bytes: &[u8],
    collateral: &Collateral,
    now: i64,
) -> Result<(), AttestError> {
    let v = set
        .for_evidence(bytes, None)
        .or_else(|_| set.get(TeeType::Nitro))?;
    v.verify(bytes, collateral, now).map(|_| ())
}

/// Byte ranges that are signed (body) or are the signature, per sample.
fn signed_ranges(name: &str, bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    match name {
        SNP_MILAN | SNP_GENOA => vec![0..0x2A0, 0x2A0..0x2A0 + 48, 0x2E8..0x2E8 + 48],
        SGX | TDX => {
            let tee = if name == SGX {
                TeeType::Sgx
            } else {
                TeeType::Tdx
            };
            let q = DcapQuote::parse(bytes, tee).unwrap();
            let body = if name == SGX { 48 + 384 } else { 48 + 584 };
            // Signed header + body; then 4-byte auth data length, 64-byte quote signature,
            // 64-byte attestation key, 384-byte QE report, 64-byte QE report signature.
            vec![
                0..body,
                body + 4..body + 4 + 64 + 64 + 384 + 64,
                body..q.len.min(body + 4),
            ]
        }
        _ => std::iter::once(0..bytes.len()).collect(),
    }
}

#[test]
fn a_flipped_byte_in_the_signed_body_or_signature_is_rejected_everywhere_tested() {
    let set = verifiers();
    for (name, collateral, now) in all_samples() {
        let original = evidence(name);
        let mut tested = 0;
        for range in signed_ranges(name, &original) {
            // Every byte for small ranges; a dense stride for the large Nitro payload.
            let step = if range.len() > 1500 { 7 } else { 1 };
            for i in range.step_by(step) {
                let mut bytes = original.clone();
                bytes[i] ^= 0x10;
                let result = verify_with(&set, &bytes, &collateral, now);
                assert!(
                    result.is_err(),
                    "{name}: flipping byte {i} was not detected"
                );
                tested += 1;
            }
        }
        assert!(tested > 100, "{name}: only {tested} positions tested");
    }
}

#[test]
fn truncated_evidence_is_rejected_without_panicking() {
    let set = verifiers();
    for (name, collateral, now) in all_samples() {
        let original = evidence(name);
        let used = original.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        for cut in [0, 1, 4, 16, 48, 100, used / 2, used - 64, used - 1] {
            let result = verify_with(&set, &original[..cut], &collateral, now);
            assert!(result.is_err(), "{name} truncated to {cut} bytes verified");
        }
    }
}

#[test]
fn trailing_bytes_are_rejected_but_zero_padding_is_allowed_after_quotes_and_reports() {
    let set = verifiers();
    for (name, collateral, now) in all_samples() {
        let mut junk = evidence(name);
        junk.extend_from_slice(&[0, 0, 1]);
        let err = verify_with(&set, &junk, &collateral, now).unwrap_err();
        assert!(
            matches!(err, AttestError::Malformed { .. }),
            "{name}: {err}"
        );

        let mut padded = evidence(name);
        padded.extend_from_slice(&[0; 16]);
        let padded_ok = verify_with(&set, &padded, &collateral, now).is_ok();
        // Nitro documents are CBOR: nothing may follow them. DCAP quotes and SNP reports
        // are read by length, and zero padding after them is common (configfs-tsm).
        assert_eq!(
            padded_ok,
            ![NITRO_PROD, NITRO_DEBUG].contains(&name),
            "{name}"
        );
    }
}

#[test]
fn evidence_outside_its_validity_window_is_rejected() {
    let set = verifiers();
    let cases = [
        (
            NITRO_PROD,
            Collateral::default(),
            "2022-10-13T12:00:00Z",
            "2022-10-13T08:50:00Z",
        ),
        (
            NITRO_DEBUG,
            Collateral::default(),
            "2023-09-18T17:40:00Z",
            "2023-09-18T14:30:00Z",
        ),
        (
            SNP_MILAN,
            snp_collateral(SNP_MILAN_VCEK),
            "2030-04-04T00:00:00Z",
            "2023-04-03T00:00:00Z",
        ),
        (
            SNP_GENOA,
            snp_collateral(SNP_GENOA_VCEK),
            "2032-01-25T00:00:00Z",
            "2025-01-23T00:00:00Z",
        ),
        (
            SGX,
            dcap_collateral(SGX_COLLATERAL),
            "2025-07-19T10:01:19Z",
            "2025-06-19T10:00:00Z",
        ),
        (
            TDX,
            dcap_collateral(TDX_COLLATERAL),
            "2025-07-19T10:00:36Z",
            "2025-06-19T10:00:00Z",
        ),
    ];
    for (name, collateral, after, before) in cases {
        let bytes = evidence(name);
        for when in [after, before] {
            let result = verify_with(&set, &bytes, &collateral, at(when));
            assert!(result.is_err(), "{name} verified at {when}");
        }
    }
}

#[test]
fn evidence_is_rejected_under_a_different_root() {
    // A trust store that holds another vendor's roots only.
    let mut store = TrustStore::builtin().unwrap();
    let amd_only = TrustStore {
        nitro: vec![],
        intel: vec![],
        ..store.clone()
    };
    let set = VerifierSet::new(&amd_only);
    for (name, collateral, now) in all_samples() {
        if name.starts_with("sev-snp") {
            continue;
        }
        assert!(
            verify_with(&set, &evidence(name), &collateral, now).is_err(),
            "{name}"
        );
    }
    // Nitro anchored at the Intel root, Intel at the AWS root.
    let swapped = TrustStore {
        nitro: store.intel.clone(),
        intel: store.nitro.clone(),
        amd: vec![],
    };
    let set = VerifierSet::new(&swapped);
    for (name, collateral, now) in all_samples() {
        assert!(
            verify_with(&set, &evidence(name), &collateral, now).is_err(),
            "{name}"
        );
    }
    // The Genoa VCEK does not verify under the Milan product line.
    store.amd.retain(|p| p.product == "Milan");
    let set = VerifierSet::new(&store);
    let err = verify_with(
        &set,
        &evidence(SNP_GENOA),
        &snp_collateral(SNP_GENOA_VCEK),
        at(SNP_GENOA_AT),
    )
    .unwrap_err();
    assert!(matches!(err, AttestError::Chain(_)), "{err}");
}

#[test]
fn snp_report_with_the_wrong_vcek_is_rejected() {
    let set = verifiers();
    let err = verify_with(
        &set,
        &evidence(SNP_MILAN),
        &snp_collateral(SNP_GENOA_VCEK),
        at(SNP_GENOA_AT),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AttestError::BadSignature { .. } | AttestError::Inconsistent(_)
        ),
        "{err}"
    );
    let err = verify_with(
        &set,
        &evidence(SNP_MILAN),
        &Collateral::default(),
        at(SNP_MILAN_AT),
    )
    .unwrap_err();
    assert!(matches!(err, AttestError::Collateral(_)), "{err}");
}

#[test]
fn snp_supplied_ask_and_ark_must_be_the_pinned_ones() {
    let set = verifiers();
    let mut collateral = snp_collateral(SNP_MILAN_VCEK);
    let ask_ark = cloister_attest::x509::parse_certs(&raw(SNP_MILAN_ASK_ARK)).unwrap();
    assert_eq!(ask_ark.len(), 2);
    collateral.certs.extend(ask_ark);
    assert!(verify_with(&set, &evidence(SNP_MILAN), &collateral, at(SNP_MILAN_AT)).is_ok());
    // An Intel root is not an AMD ARK.
    let store = TrustStore::builtin().unwrap();
    collateral.certs.push(store.intel[0].cert.clone());
    let err = verify_with(&set, &evidence(SNP_MILAN), &collateral, at(SNP_MILAN_AT)).unwrap_err();
    assert!(
        err.to_string().contains("does not match any embedded AMD"),
        "{err}"
    );
}

#[test]
fn dcap_needs_collateral_and_rejects_tampered_collateral() {
    let set = verifiers();
    let err = verify_with(&set, &evidence(SGX), &Collateral::default(), at(SGX_AT)).unwrap_err();
    assert!(matches!(err, AttestError::Collateral(_)), "{err}");
    // Tamper with the signed TCB info JSON (keep it valid JSON).
    let mut collateral = dcap_collateral(SGX_COLLATERAL);
    let dcap = collateral.dcap.as_mut().unwrap();
    assert!(dcap.tcb_info.contains("\"tcbType\":0"));
    dcap.tcb_info = dcap.tcb_info.replacen("\"tcbType\":0", "\"tcbType\":1", 1);
    assert!(verify_with(&set, &evidence(SGX), &collateral, at(SGX_AT)).is_err());
    // The TDX collateral does not verify an SGX quote.
    assert!(
        verify_with(
            &set,
            &evidence(SGX),
            &dcap_collateral(TDX_COLLATERAL),
            at(SGX_AT)
        )
        .is_err()
    );
}
