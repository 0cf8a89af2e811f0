//! The sim platform identity (stands in for the CPU's attestation key) and the sim attester.

use super::evidence::VERSION;
use super::measure::MEASUREMENT_LEN;
use crate::attester::{Attester, Produced};
use crate::error::AttestError;
use crate::tee::TeeType;
use crate::x509::Cert;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ciborium::Value;
use cloister_crypto::{SecretBytes, SecretKey32, kdf::hkdf_sha256};
use coset::{CoseSign1Builder, HeaderBuilder, TaggedCborSerializable, iana};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// File holding the platform identity inside a data directory.
pub const PLATFORM_FILE: &str = "sim-platform.json";

fn unsupported(msg: impl Into<String>) -> AttestError {
    AttestError::Unsupported(msg.into())
}

/// The sim platform: attestation signing key, its self-signed root, and the sealing secret.
pub struct SimPlatform {
    key: EcdsaKeyPair,
    pkcs8: SecretBytes,
    root: Cert,
    seal_secret: SecretKey32,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    key_pkcs8: String,
    seal_secret: String,
    root_cert: String,
}

impl Drop for Stored {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key_pkcs8.zeroize();
        self.seal_secret.zeroize();
    }
}

impl std::fmt::Debug for SimPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimPlatform(root sha256 {})", self.fingerprint_hex())
    }
}

impl SimPlatform {
    /// A new random platform (not persisted).
    pub fn generate() -> Result<Self, AttestError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .map_err(|e| unsupported(format!("cannot generate the sim platform key: {e}")))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| unsupported(format!("sim root parameters: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "Cloister sim platform root (simulated TEE, no hardware protection)",
        );
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365 * 20);
        let cert = params
            .self_signed(&key)
            .map_err(|e| unsupported(format!("cannot self-sign the sim root: {e}")))?;
        let pkcs8 = SecretBytes::new(key.serialize_der());
        Self::from_parts(
            pkcs8,
            SecretKey32::random().map_err(|e| unsupported(e.to_string()))?,
            cert.der(),
        )
    }

    fn from_parts(
        pkcs8: SecretBytes,
        seal_secret: SecretKey32,
        root_der: &[u8],
    ) -> Result<Self, AttestError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.expose())
            .map_err(|e| unsupported(format!("sim platform key is not a P-384 PKCS#8 key: {e}")))?;
        let root = Cert::from_der(root_der)?;
        use aws_lc_rs::signature::KeyPair;
        let spki_key = root
            .parsed()
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        if key.public_key().as_ref() != spki_key {
            return Err(unsupported(
                "sim platform root does not certify the platform key",
            ));
        }
        Ok(Self {
            key,
            pkcs8,
            root,
            seal_secret,
        })
    }

    /// Loads the platform from `dir`, creating it on first use; `true` when it was created.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), AttestError> {
        let path = dir.join(PLATFORM_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok((Self::decode(&bytes, &path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let platform = Self::generate()?;
                platform.save(&path)?;
                Ok((platform, true))
            }
            Err(e) => Err(unsupported(format!("cannot read {}: {e}", path.display()))),
        }
    }

    fn decode(bytes: &[u8], path: &Path) -> Result<Self, AttestError> {
        let bad = |what: &str| unsupported(format!("{} is corrupt: {what}", path.display()));
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
        if stored.version != 1 {
            return Err(bad(&format!("version {}", stored.version)));
        }
        let pkcs8 = SecretBytes::new(
            B64.decode(&stored.key_pkcs8)
                .map_err(|_| bad("key_pkcs8"))?,
        );
        let seal = Zeroizing::new(
            B64.decode(&stored.seal_secret)
                .map_err(|_| bad("seal_secret"))?,
        );
        let root = B64
            .decode(&stored.root_cert)
            .map_err(|_| bad("root_cert"))?;
        let seal = SecretKey32::from_slice(&seal).map_err(|_| bad("seal_secret length"))?;
        Self::from_parts(pkcs8, seal, &root)
    }

    fn save(&self, path: &Path) -> Result<(), AttestError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let json = Zeroizing::new(
            serde_json::to_vec_pretty(&Stored {
                version: 1,
                key_pkcs8: B64.encode(self.pkcs8.expose()),
                seal_secret: B64.encode(self.seal_secret.expose()),
                root_cert: B64.encode(self.root.der()),
            })
            .map_err(|e| unsupported(e.to_string()))?,
        );
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let io = |e: std::io::Error| unsupported(format!("cannot write {}: {e}", path.display()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&json).and_then(|()| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// The self-signed root certificate clients pin.
    pub fn root(&self) -> &Cert {
        &self.root
    }

    /// SHA-256 of the root certificate's DER, hex: what clients pin.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.root.fingerprint())
    }

    /// The sealing key for `measurement` and `purpose`: a binary with another measurement
    /// derives a different key (like SGX MRENCLAVE sealing).
    pub fn sealing_key(
        &self,
        measurement: &[u8; MEASUREMENT_LEN],
        purpose: &str,
    ) -> Result<SecretKey32, AttestError> {
        let info = format!("cloister/sim-seal/v1/{purpose}");
        hkdf_sha256(self.seal_secret.expose(), measurement, info.as_bytes())
            .map_err(|e| unsupported(e.to_string()))
    }

    /// Signs sim evidence for `role` with `measurement` and `report_data`, dated `timestamp_ms`.
    pub fn sign_evidence(
        &self,
        role: &str,
        measurement: &[u8; MEASUREMENT_LEN],
        report_data: &[u8; 64],
        timestamp_ms: u64,
    ) -> Result<Vec<u8>, AttestError> {
        let payload = Value::Map(vec![
            (Value::Text("v".into()), Value::Integer(VERSION.into())),
            (Value::Text("tee".into()), Value::Text("sim".into())),
            (Value::Text("role".into()), Value::Text(role.into())),
            (
                Value::Text("measurement".into()),
                Value::Bytes(measurement.to_vec()),
            ),
            (
                Value::Text("report_data".into()),
                Value::Bytes(report_data.to_vec()),
            ),
            (
                Value::Text("timestamp_ms".into()),
                Value::Integer(timestamp_ms.into()),
            ),
            (
                Value::Text("platform_cert".into()),
                Value::Bytes(self.root.der().to_vec()),
            ),
        ]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&payload, &mut bytes).map_err(|e| unsupported(e.to_string()))?;
        let rng = SystemRandom::new();
        let sign1 = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
            )
            .payload(bytes)
            .try_create_signature(b"", |tbs| {
                self.key
                    .sign(&rng, tbs)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| unsupported("sim platform signing failed"))
            })?
            .build();
        sign1
            .to_tagged_vec()
            .map_err(|e| unsupported(format!("cannot encode sim evidence: {e}")))
    }
}

/// Produces sim evidence for one role and measurement.
#[derive(Debug, Clone)]
pub struct SimAttester {
    platform: Arc<SimPlatform>,
    role: String,
    measurement: [u8; MEASUREMENT_LEN],
}

impl SimAttester {
    /// An attester for `role` whose launch measurement is `measurement`.
    pub fn new(platform: Arc<SimPlatform>, role: &str, measurement: [u8; MEASUREMENT_LEN]) -> Self {
        Self {
            platform,
            role: role.to_owned(),
            measurement,
        }
    }

    /// The measurement this attester reports.
    pub fn measurement(&self) -> &[u8; MEASUREMENT_LEN] {
        &self.measurement
    }
}

impl Attester for SimAttester {
    fn tee(&self) -> TeeType {
        TeeType::Sim
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Produced, AttestError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Ok(Produced {
            tee: TeeType::Sim,
            evidence: self.platform.sign_evidence(
                &self.role,
                &self.measurement,
                report_data,
                now_ms,
            )?,
            aux: None,
        })
    }
}
