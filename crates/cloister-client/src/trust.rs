//! What a client accepts before it seals anything (`cloister trust`): pinned platform roots,
//! the keyvault builds it trusts, the executor builds it is willing to let read its inputs,
//! and how old keyvault's evidence may be.
//!
//! keyvault releases the fleet private key to every executor build on its policy, so a bundle
//! whose allowlist names a build the client does not accept is refused as a whole: sealing to
//! it would let that build read the input.

use crate::attestation::{Bundle, BundleError, TrustedKeyvault, presented_root, verify_bundle};

/// Default maximum age of keyvault's evidence, seconds.
pub const DEFAULT_MAX_BUNDLE_AGE_SECS: i64 = 300;

/// A client's trust settings for one platform.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustSettings {
    /// SHA-256 fingerprints (hex) of the platform roots accepted (sim roots today).
    #[serde(default)]
    pub roots: Vec<String>,
    /// keyvault measurements (hex) accepted.
    #[serde(default)]
    pub keyvault_measurements: Vec<String>,
    /// Executor measurements (hex) accepted; empty: whatever keyvault's policy allows.
    #[serde(default)]
    pub executor_measurements: Vec<String>,
    /// Maximum age of keyvault's evidence, seconds.
    #[serde(default = "default_age")]
    pub max_bundle_age_secs: i64,
}

fn default_age() -> i64 {
    DEFAULT_MAX_BUNDLE_AGE_SECS
}

impl Default for TrustSettings {
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            keyvault_measurements: Vec::new(),
            executor_measurements: Vec::new(),
            max_bundle_age_secs: DEFAULT_MAX_BUNDLE_AGE_SECS,
        }
    }
}

/// Why a bundle is outside the trust settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// No root or no keyvault measurement is configured.
    #[error("no {0} is trusted yet (cloister trust)")]
    Unconfigured(&'static str),
    /// The evidence chains to a root not accepted.
    #[error("keyvault's evidence chains to root {0}, which is not trusted")]
    RootNotTrusted(String),
    /// The bundle failed verification (wrong build, stale, unbound...).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// keyvault would release the fleet key to an executor build the client does not accept.
    #[error(
        "keyvault's policy lets executor build {0} read sealed inputs, and this client does not \
         accept it (cloister trust executor add, if it should)"
    )]
    ExecutorNotAccepted(String),
}

fn has(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x.trim().eq_ignore_ascii_case(v.trim()))
}

impl TrustSettings {
    /// Verifies `bundle` at `now` against these settings.
    pub fn verify(&self, bundle: &Bundle, now: i64) -> Result<TrustedKeyvault, TrustError> {
        if self.roots.is_empty() {
            return Err(TrustError::Unconfigured("platform root"));
        }
        if self.keyvault_measurements.is_empty() {
            return Err(TrustError::Unconfigured("keyvault measurement"));
        }
        let root = presented_root(bundle)?;
        if !has(&self.roots, &root) {
            return Err(TrustError::RootNotTrusted(root));
        }
        let mut last = None;
        for m in &self.keyvault_measurements {
            let mut expected = [0u8; 48];
            if hex::decode_to_slice(m.trim(), &mut expected).is_err() {
                continue;
            }
            match verify_bundle(bundle, &root, &expected, self.max_bundle_age_secs, now) {
                Ok(kv) => {
                    if !self.executor_measurements.is_empty()
                        && let Some(e) = kv
                            .executor_measurements
                            .iter()
                            .find(|e| !has(&self.executor_measurements, e))
                    {
                        return Err(TrustError::ExecutorNotAccepted(e.clone()));
                    }
                    return Ok(kv);
                }
                Err(e @ BundleError::WrongMeasurement { .. }) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .map(TrustError::from)
            .unwrap_or(TrustError::Unconfigured("keyvault measurement")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use cloister_attest::attester::Attester as _;
    use cloister_attest::sim::{SimAttester, SimPlatform};
    use cloister_types::wire::KeyvaultPart;
    use std::sync::Arc;

    /// A genuine sim bundle from `platform` for keyvault build `kv` allowing `executors`.
    fn bundle(platform: &Arc<SimPlatform>, kv: [u8; 48], executors: &[&str]) -> Bundle {
        let executors: Vec<String> = executors.iter().map(|s| s.to_string()).collect();
        let hpke = [1u8; 32];
        let audit = [2u8; 32];
        let registry = [3u8; 32];
        let rd =
            cloister_types::binding::bundle_report_data(&hpke, &audit, &executors, &registry, &[]);
        let ev = SimAttester::new(platform.clone(), "keyvault", kv)
            .attest(&rd)
            .unwrap();
        Bundle {
            tee: "sim".into(),
            tee_label: "sim".into(),
            keyvault: KeyvaultPart {
                evidence: base64::engine::general_purpose::STANDARD.encode(&ev.evidence),
                hpke_public_key: hex::encode(hpke),
                hpke_suite: String::new(),
                audit_public_key: hex::encode(audit),
                registry_digest: hex::encode(registry),
                admins: vec![],
                fleet_keys: vec![],
            },
            executor_measurements: executors,
            sim_root_fingerprint: None,
        }
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn a_bundle_outside_the_settings_is_refused_before_anything_is_sealed() {
        let platform = Arc::new(SimPlatform::generate().unwrap());
        let exec_a = "aa".repeat(48);
        let exec_b = "bb".repeat(48);
        let b = bundle(&platform, [7; 48], &[&exec_a, &exec_b]);
        let ok = TrustSettings {
            roots: vec![platform.fingerprint_hex()],
            keyvault_measurements: vec!["00".repeat(48), hex::encode([7u8; 48])],
            executor_measurements: vec![exec_a.clone(), exec_b.clone()],
            max_bundle_age_secs: 300,
        };
        assert!(ok.verify(&b, now()).is_ok());
        // Any executor build is fine when none are listed.
        let any_exec = TrustSettings {
            executor_measurements: vec![],
            ..ok.clone()
        };
        assert!(any_exec.verify(&b, now()).is_ok());

        let cases = [
            (
                TrustSettings {
                    executor_measurements: vec![exec_a.clone()],
                    ..ok.clone()
                },
                "executor",
            ),
            (
                TrustSettings {
                    roots: vec!["cd".repeat(32)],
                    ..ok.clone()
                },
                "root",
            ),
            (
                TrustSettings {
                    keyvault_measurements: vec!["00".repeat(48)],
                    ..ok.clone()
                },
                "measurement",
            ),
            (TrustSettings::default(), "trusted yet"),
        ];
        for (settings, why) in cases {
            let e = settings.verify(&b, now()).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
        // Too old for the configured age.
        assert!(matches!(
            ok.verify(&b, now() + 301),
            Err(TrustError::Bundle(BundleError::Stale(..)))
        ));
        // Another platform's bundle.
        let other = Arc::new(SimPlatform::generate().unwrap());
        assert!(matches!(
            ok.verify(&bundle(&other, [7; 48], &[&exec_a]), now()),
            Err(TrustError::RootNotTrusted(_))
        ));
    }
}
