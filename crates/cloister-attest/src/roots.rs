//! Vendor trust anchors, embedded and pinned by the SHA-256 of their DER encoding.
//!
//! Names are never trusted: a certificate called "Intel SGX Root CA" that is not the
//! byte-identical pinned certificate is just another certificate.

use crate::error::AttestError;
use crate::x509::{Anchor, Cert, parse_certs};

/// One embedded vendor certificate and the fingerprint it must have.
struct Embedded {
    name: &'static str,
    pem: &'static str,
    sha256: &'static str,
}

const AWS_NITRO_ROOT_G1: Embedded = Embedded {
    name: "aws-nitro-root-g1",
    pem: include_str!("../roots/aws_nitro_root_g1.pem"),
    sha256: "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b",
};
const INTEL_SGX_ROOT_CA: Embedded = Embedded {
    name: "intel-sgx-root-ca",
    pem: include_str!("../roots/intel_sgx_root_ca.pem"),
    sha256: "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3",
};

/// AMD product lines with known roots: (product, ARK, ASK, ASVK).
const AMD: [(&str, Embedded, Embedded, Option<Embedded>); 3] = [
    (
        "Milan",
        Embedded {
            name: "amd-ark-milan",
            pem: include_str!("../roots/amd_ark_milan.pem"),
            sha256: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
        },
        Embedded {
            name: "amd-ask-milan",
            pem: include_str!("../roots/amd_ask_milan.pem"),
            sha256: "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
        },
        Some(Embedded {
            name: "amd-asvk-milan",
            pem: include_str!("../roots/amd_asvk_milan.pem"),
            sha256: "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
        }),
    ),
    (
        "Genoa",
        Embedded {
            name: "amd-ark-genoa",
            pem: include_str!("../roots/amd_ark_genoa.pem"),
            sha256: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
        },
        Embedded {
            name: "amd-ask-genoa",
            pem: include_str!("../roots/amd_ask_genoa.pem"),
            sha256: "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
        },
        Some(Embedded {
            name: "amd-asvk-genoa",
            pem: include_str!("../roots/amd_asvk_genoa.pem"),
            sha256: "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
        }),
    ),
    (
        "Turin",
        Embedded {
            name: "amd-ark-turin",
            pem: include_str!("../roots/amd_ark_turin.pem"),
            sha256: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
        },
        Embedded {
            name: "amd-ask-turin",
            pem: include_str!("../roots/amd_ask_turin.pem"),
            sha256: "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
        },
        None,
    ),
];

/// The AMD certificates of one product line.
#[derive(Debug, Clone)]
pub struct AmdProduct {
    /// Product line, e.g. `Milan`.
    pub product: String,
    /// AMD Root Key: the trust anchor.
    pub ark: Anchor,
    /// AMD SEV Key: signs VCEKs.
    pub ask: Cert,
    /// AMD SEV VLEK Key: signs VLEKs, where known.
    pub asvk: Option<Cert>,
}

/// Every trust anchor a verifier may chain to.
#[derive(Debug, Clone)]
pub struct TrustStore {
    /// AWS Nitro roots.
    pub nitro: Vec<Anchor>,
    /// AMD product lines.
    pub amd: Vec<AmdProduct>,
    /// Intel SGX/TDX roots.
    pub intel: Vec<Anchor>,
}

fn load(e: &Embedded) -> Result<Cert, AttestError> {
    let cert = parse_certs(e.pem.as_bytes())?
        .into_iter()
        .next()
        .ok_or_else(|| AttestError::Chain(format!("embedded {} holds no certificate", e.name)))?;
    if hex::encode(cert.fingerprint()) != e.sha256 {
        return Err(AttestError::Chain(format!(
            "embedded {} does not have its pinned fingerprint",
            e.name
        )));
    }
    Ok(cert)
}

fn anchor(e: &Embedded) -> Result<Anchor, AttestError> {
    Ok(Anchor {
        name: e.name.to_owned(),
        cert: load(e)?,
    })
}

impl TrustStore {
    /// The vendor roots compiled into Cloister, each checked against its pinned fingerprint.
    pub fn builtin() -> Result<Self, AttestError> {
        let amd = AMD
            .iter()
            .map(|(product, ark, ask, asvk)| {
                Ok(AmdProduct {
                    product: (*product).to_owned(),
                    ark: anchor(ark)?,
                    ask: load(ask)?,
                    asvk: asvk.as_ref().map(load).transpose()?,
                })
            })
            .collect::<Result<_, AttestError>>()?;
        Ok(Self {
            nitro: vec![anchor(&AWS_NITRO_ROOT_G1)?],
            amd,
            intel: vec![anchor(&INTEL_SGX_ROOT_CA)?],
        })
    }

    /// A store with no anchors at all (for tests that bring their own roots).
    pub fn empty() -> Self {
        Self {
            nitro: Vec::new(),
            amd: Vec::new(),
            intel: Vec::new(),
        }
    }

    /// Adds operator-supplied roots for `tee` (PEM or DER). For SEV-SNP the file must hold a
    /// self-signed ARK and the ASK it signed; for the others each certificate becomes an anchor.
    pub fn add_extra(
        &mut self,
        tee: crate::tee::TeeType,
        bytes: &[u8],
        label: &str,
    ) -> Result<(), AttestError> {
        use crate::tee::TeeType;
        let certs = parse_certs(bytes)?;
        let named = |i: usize, c: &Cert| Anchor {
            name: format!("extra:{label}#{i}"),
            cert: c.clone(),
        };
        match tee {
            TeeType::Nitro => self
                .nitro
                .extend(certs.iter().enumerate().map(|(i, c)| named(i, c))),
            TeeType::Sgx | TeeType::Tdx => self
                .intel
                .extend(certs.iter().enumerate().map(|(i, c)| named(i, c))),
            TeeType::SevSnp => {
                let (arks, asks): (Vec<&Cert>, Vec<&Cert>) =
                    certs.iter().partition(|c| c.issued_by_name(c));
                match (arks.as_slice(), asks.as_slice()) {
                    ([ark], [ask]) => self.amd.push(AmdProduct {
                        product: format!("extra:{label}"),
                        ark: named(0, ark),
                        ask: (*ask).clone(),
                        asvk: None,
                    }),
                    _ => {
                        return Err(AttestError::Chain(format!(
                            "{label}: an extra AMD root file must hold one self-signed ARK and one ASK"
                        )));
                    }
                }
            }
            TeeType::Sim => {
                return Err(AttestError::Unsupported(
                    "extra roots for the simulated TEE".into(),
                ));
            }
        }
        Ok(())
    }

    /// Every anchor with its SHA-256 fingerprint: what `cloister attest roots` prints.
    pub fn fingerprints(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for a in &self.nitro {
            out.push((
                "nitro".into(),
                a.name.clone(),
                hex::encode(a.cert.fingerprint()),
            ));
        }
        for p in &self.amd {
            out.push((
                "sev-snp".into(),
                p.ark.name.clone(),
                hex::encode(p.ark.cert.fingerprint()),
            ));
            out.push((
                "sev-snp".into(),
                format!("amd-ask-{}", p.product.to_lowercase()),
                hex::encode(p.ask.fingerprint()),
            ));
            if let Some(asvk) = &p.asvk {
                out.push((
                    "sev-snp".into(),
                    format!("amd-asvk-{}", p.product.to_lowercase()),
                    hex::encode(asvk.fingerprint()),
                ));
            }
        }
        for a in &self.intel {
            out.push((
                "sgx/tdx".into(),
                a.name.clone(),
                hex::encode(a.cert.fingerprint()),
            ));
        }
        out
    }
}
