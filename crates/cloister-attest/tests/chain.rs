//! Chain validation and CRL revocation against a test PKI generated here (rcgen).

use cloister_attest::AttestError;
use cloister_attest::x509::{Anchor, Cert, Crl, verify_chain};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P384_SHA384, RevokedCertParams,
    SerialNumber,
};
use time::OffsetDateTime;

/// 2030-01-01T00:00:00Z: inside every generated certificate's validity window.
const NOW: i64 = 1_893_456_000;

fn t(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

fn params(cn: &str, ca: bool, serial: u64) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = t(NOW - 86_400 * 365);
    p.not_after = t(NOW + 86_400 * 365);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    }
    p
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap()
}

struct Pki {
    root: CertifiedIssuer<'static, KeyPair>,
    inter: CertifiedIssuer<'static, KeyPair>,
    leaf: Cert,
}

fn pki(root_cn: &str) -> Pki {
    let root = CertifiedIssuer::self_signed(params(root_cn, true, 1), key()).unwrap();
    let inter =
        CertifiedIssuer::signed_by(params("Test Intermediate", true, 2), key(), &root).unwrap();
    let leaf = params("Test Leaf", false, 3)
        .signed_by(&key(), &inter)
        .unwrap();
    Pki {
        root,
        inter,
        leaf: Cert::from_der(leaf.der()).unwrap(),
    }
}

impl Pki {
    fn anchor(&self) -> Anchor {
        Anchor {
            name: "test-root".into(),
            cert: Cert::from_der(self.root.der()).unwrap(),
        }
    }
    fn inter_cert(&self) -> Cert {
        Cert::from_der(self.inter.der()).unwrap()
    }
    fn path(&self) -> Vec<Cert> {
        vec![self.leaf.clone(), self.inter_cert()]
    }
}

fn crl(issuer: &CertifiedIssuer<'static, KeyPair>, revoked: &[u64], this: i64, next: i64) -> Crl {
    let params = CertificateRevocationListParams {
        this_update: t(this),
        next_update: t(next),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: t(NOW - 3600),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Crl::from_der(params.signed_by(issuer).unwrap().der()).unwrap()
}

#[test]
fn a_valid_chain_verifies_and_reports_its_expiry() {
    let p = pki("Test Root");
    let chain = verify_chain(&p.path(), &[p.anchor()], NOW, &[]).unwrap();
    assert_eq!(chain.certs.len(), 3);
    assert_eq!(chain.anchor, "test-root");
    assert_eq!(chain.valid_until, NOW + 86_400 * 365);
}

#[test]
fn a_chain_that_includes_the_root_verifies_too() {
    let p = pki("Test Root");
    let mut path = p.path();
    path.push(p.anchor().cert);
    assert!(verify_chain(&path, &[p.anchor()], NOW, &[]).is_ok());
}

#[test]
fn a_revoked_leaf_is_rejected() {
    let p = pki("Test Root");
    let crl = crl(&p.inter, &[3], NOW - 60, NOW + 86_400);
    let err = verify_chain(&p.path(), &[p.anchor()], NOW, &[crl]).unwrap_err();
    assert!(
        matches!(err, AttestError::Revoked { ref subject, .. } if subject.contains("Test Leaf")),
        "{err}"
    );
}

#[test]
fn a_revoked_intermediate_is_rejected_by_the_root_crl() {
    let p = pki("Test Root");
    let crl = crl(&p.root, &[2], NOW - 60, NOW + 86_400);
    let err = verify_chain(&p.path(), &[p.anchor()], NOW, &[crl]).unwrap_err();
    assert!(
        matches!(err, AttestError::Revoked { ref subject, .. } if subject.contains("Intermediate")),
        "{err}"
    );
}

#[test]
fn a_crl_that_lists_other_serials_lets_the_chain_through_and_bounds_its_lifetime() {
    let p = pki("Test Root");
    let crl = crl(&p.inter, &[99], NOW - 60, NOW + 600);
    let chain = verify_chain(&p.path(), &[p.anchor()], NOW, &[crl]).unwrap();
    assert_eq!(chain.crls_checked, 1);
    assert_eq!(chain.valid_until, NOW + 600);
}

#[test]
fn a_forged_crl_is_rejected() {
    let p = pki("Test Root");
    // Same issuer name, different key: the CRL signature must not verify.
    let forger = CertifiedIssuer::self_signed(params("Test Intermediate", true, 7), key()).unwrap();
    let crl = crl(&forger, &[], NOW - 60, NOW + 86_400);
    let err = verify_chain(&p.path(), &[p.anchor()], NOW, &[crl]).unwrap_err();
    assert!(matches!(err, AttestError::Collateral(_)), "{err}");
}

#[test]
fn a_stale_or_future_crl_is_rejected() {
    let p = pki("Test Root");
    let stale = crl(&p.inter, &[], NOW - 7200, NOW - 3600);
    assert!(matches!(
        verify_chain(&p.path(), &[p.anchor()], NOW, &[stale]),
        Err(AttestError::Collateral(m)) if m.contains("stale")
    ));
    let future = crl(&p.inter, &[], NOW + 3600, NOW + 7200);
    assert!(matches!(
        verify_chain(&p.path(), &[p.anchor()], NOW, &[future]),
        Err(AttestError::Collateral(_))
    ));
}

#[test]
fn a_root_with_the_same_name_but_another_key_is_not_trusted() {
    let real = pki("Intel SGX Root CA");
    let fake = pki("Intel SGX Root CA");
    let err = verify_chain(&fake.path(), &[real.anchor()], NOW, &[]).unwrap_err();
    assert!(err.to_string().contains("not signed by its key"), "{err}");
    // Presenting the fake self-signed root itself does not help either.
    let mut path = fake.path();
    path.push(fake.anchor().cert);
    assert!(verify_chain(&path, &[real.anchor()], NOW, &[]).is_err());
}

#[test]
fn validity_is_checked_at_the_verification_time() {
    let p = pki("Test Root");
    let after = NOW + 86_400 * 366;
    let before = NOW - 86_400 * 366;
    assert!(
        verify_chain(&p.path(), &[p.anchor()], after, &[])
            .unwrap_err()
            .to_string()
            .contains("expired")
    );
    assert!(
        verify_chain(&p.path(), &[p.anchor()], before, &[])
            .unwrap_err()
            .to_string()
            .contains("not valid before")
    );
}

#[test]
fn a_certificate_signed_by_a_non_ca_is_rejected() {
    let p = pki("Test Root");
    let leaf_issuer =
        CertifiedIssuer::signed_by(params("Not A CA", false, 5), key(), &p.inter).unwrap();
    let grandchild = params("Grandchild", false, 6)
        .signed_by(&key(), &leaf_issuer)
        .unwrap();
    let path = vec![
        Cert::from_der(grandchild.der()).unwrap(),
        Cert::from_der(leaf_issuer.der()).unwrap(),
        p.inter_cert(),
    ];
    let err = verify_chain(&path, &[p.anchor()], NOW, &[]).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
}

#[test]
fn a_tampered_certificate_is_rejected() {
    let p = pki("Test Root");
    let mut der = p.leaf.der().to_vec();
    // Flip a byte inside the subject public key (near the end of the TBS part).
    let i = der.len() - 120;
    der[i] ^= 0x01;
    match Cert::from_der(&der) {
        Err(_) => {}
        Ok(tampered) => {
            let path = vec![tampered, p.inter_cert()];
            assert!(verify_chain(&path, &[p.anchor()], NOW, &[]).is_err());
        }
    }
}

#[test]
fn an_empty_chain_is_an_error_not_a_panic() {
    let p = pki("Test Root");
    assert!(verify_chain(&[], &[p.anchor()], NOW, &[]).is_err());
}
