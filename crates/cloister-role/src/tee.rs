//! The simulated TEE as the server roles use it: the platform identity in the data
//! directory, what each trusted role's measurement covers, and the policies the roles apply
//! to each other.
//!
//! A measurement covers exactly one trusted executable, its role and a digest of its
//! security-relevant configuration (`cloister_attest::sim::measure`). For keyvault that
//! configuration is fixed; for the executor it names the worker executable it runs (by
//! SHA-384), the keyvault measurements it trusts, how long it caches secrets and the worker
//! uids, so the executor's measurement covers the worker too, and a differently configured
//! executor measures differently.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use cloister_attest::sim::{MEASUREMENT_LEN, SimPlatform, SimVerifier, measure};
use cloister_attest::{Policy, TrustStore, VerifierSet};
use sha2::{Digest, Sha256, Sha384};

/// A sim measurement.
pub type Measurement = [u8; MEASUREMENT_LEN];

/// SHA-384 of an executable file.
pub type FileDigest = [u8; 48];

/// Purpose string of keyvault's root sealing key.
pub const ROOT_SEALING_PURPOSE: &str = "keyvault-root";

/// Maximum age of peer evidence when it is checked (channels re-attest well within it).
pub const MAX_EVIDENCE_AGE_SECS: u64 = 120;

/// Role name keyvault attests as.
pub const KEYVAULT_ROLE: &str = "keyvault";

/// Role name the executor attests as.
pub const EXECUTOR_ROLE: &str = "executor";

fn base_config(role: &str) -> String {
    format!(
        "cloister/dev-config/v2\0role={role}\0tee=sim\0allow_simulated=true\0max_evidence_age={MAX_EVIDENCE_AGE_SECS}"
    )
}

/// Configuration digest of keyvault (development mode).
pub fn keyvault_config_digest() -> [u8; 32] {
    Sha256::digest(base_config(KEYVAULT_ROLE).as_bytes()).into()
}

/// The executor's security-relevant settings: what its configuration digest covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorSettings {
    /// SHA-384 of the worker executable it runs.
    pub worker: FileDigest,
    /// keyvault measurements it trusts (a set: order and repeats do not matter).
    pub keyvaults: Vec<Measurement>,
    /// Seconds a fetched secret may be served from memory (how long a revoked build or a
    /// rotated value can linger).
    pub secrets_ttl_secs: u64,
    /// The uids workers switch to (each live worker gets its own).
    pub worker_uids: std::ops::Range<u32>,
}

/// Configuration digest of an executor with `settings`.
pub fn executor_config_digest(settings: &ExecutorSettings) -> [u8; 32] {
    let mut kv: Vec<String> = settings.keyvaults.iter().map(hex::encode).collect();
    kv.sort();
    kv.dedup();
    let cfg = format!(
        "{}\0worker_sha384={}\0keyvaults={}\0secrets_ttl_secs={}\0worker_uids={}..{}",
        base_config(EXECUTOR_ROLE),
        hex::encode(settings.worker),
        kv.join(","),
        settings.secrets_ttl_secs,
        settings.worker_uids.start,
        settings.worker_uids.end,
    );
    Sha256::digest(cfg.as_bytes()).into()
}

/// SHA-384 of everything `r` yields.
pub fn sha384_of(r: &mut impl Read) -> std::io::Result<FileDigest> {
    let mut h = Sha384::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

/// SHA-384 of the file at `path`.
pub fn sha384_file(path: &Path) -> anyhow::Result<FileDigest> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    sha384_of(&mut f).with_context(|| format!("cannot read {}", path.display()))
}

/// Measurement of the executable at `path` as `role` with configuration `config`.
pub fn measure_path(path: &Path, role: &str, config: &[u8; 32]) -> anyhow::Result<Measurement> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    measure(&mut f, role, config).with_context(|| format!("cannot measure {}", path.display()))
}

/// Measurement of the running executable (read through `/proc/self/exe`, so a file
/// replaced on disk since this process started is not what gets measured).
pub fn measure_running(role: &str, config: &[u8; 32]) -> anyhow::Result<Measurement> {
    measure_path(Path::new("/proc/self/exe"), role, config)
}

/// Parses 96 hex digits.
pub fn parse_measurement(text: &str) -> anyhow::Result<Measurement> {
    let mut m = [0u8; MEASUREMENT_LEN];
    if hex::decode_to_slice(text.trim(), &mut m).is_err() {
        bail!("a measurement is {} hex digits", MEASUREMENT_LEN * 2);
    }
    Ok(m)
}

/// The sim platform of `data_dir`, created there if missing (then `true`).
pub fn platform(data_dir: &Path) -> anyhow::Result<(Arc<SimPlatform>, bool)> {
    let (p, created) = SimPlatform::load_or_create(data_dir).with_context(|| {
        format!(
            "cannot load or create the sim platform in {}",
            data_dir.display()
        )
    })?;
    Ok((Arc::new(p), created))
}

/// Verifiers trusting the hardware roots plus exactly this sim platform.
pub fn verifiers(p: &SimPlatform) -> anyhow::Result<Arc<VerifierSet>> {
    let mut set = VerifierSet::new(&TrustStore::builtin().context("built-in roots")?);
    set.insert(Arc::new(
        SimVerifier::pinning(p.root().der()).context("pinning the sim root")?,
    ));
    Ok(Arc::new(set))
}

/// The development policy document for a peer: sim allowed (loudly), exactly `allowed`
/// measurements.
pub fn sim_policy_yaml(allowed: &[Measurement]) -> String {
    let list = allowed
        .iter()
        .map(|m| format!("\"{}\"", hex::encode(m)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "allow_simulated: true\nallowed_tee_types: [sim]\nallowed_measurements:\n  sim: [{list}]\nmax_age_seconds: {MAX_EVIDENCE_AGE_SECS}\n"
    )
}

/// The development policy for a peer (see [`sim_policy_yaml`]).
pub fn sim_policy(allowed: &[Measurement]) -> anyhow::Result<Policy> {
    Policy::from_yaml(&sim_policy_yaml(allowed))
        .context("building the development attestation policy")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_the_executor_configuration_changes_its_digest() {
        let base = ExecutorSettings {
            worker: [1; 48],
            keyvaults: vec![[3; 48]],
            secrets_ttl_secs: 30,
            worker_uids: 1000..2000,
        };
        let d = executor_config_digest(&base);
        let with = |f: &dyn Fn(&mut ExecutorSettings)| {
            let mut s = base.clone();
            f(&mut s);
            executor_config_digest(&s)
        };
        assert_ne!(d, with(&|s| s.worker = [2; 48]), "worker");
        assert_ne!(d, with(&|s| s.keyvaults = vec![[4; 48]]), "keyvault");
        assert_ne!(d, with(&|s| s.keyvaults.push([4; 48])), "more keyvaults");
        assert_ne!(d, with(&|s| s.secrets_ttl_secs = 300), "ttl");
        assert_ne!(d, with(&|s| s.worker_uids = 1000..1001), "uid range");
        assert_eq!(
            with(&|s| s.keyvaults = vec![[4; 48], [3; 48], [4; 48]]),
            with(&|s| s.keyvaults = vec![[3; 48], [4; 48]]),
            "a set: order and repeats do not matter"
        );
        assert_ne!(d, keyvault_config_digest());
    }

    #[test]
    fn the_running_executable_is_measured_per_role() {
        let kv = measure_running(KEYVAULT_ROLE, &keyvault_config_digest()).unwrap();
        let settings = ExecutorSettings {
            worker: [0; 48],
            keyvaults: vec![kv],
            secrets_ttl_secs: 30,
            worker_uids: 1..2,
        };
        let ex = measure_running(EXECUTOR_ROLE, &executor_config_digest(&settings)).unwrap();
        assert_ne!(kv, ex);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(
            kv,
            measure_path(&exe, KEYVAULT_ROLE, &keyvault_config_digest()).unwrap()
        );
        sim_policy(&[kv, ex]).unwrap();
        assert!(parse_measurement("ab").is_err());
        assert_eq!(parse_measurement(&hex::encode(kv)).unwrap(), kv);
    }
}
