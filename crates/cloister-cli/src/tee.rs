//! The simulated TEE as the server roles use it: the platform identity in the data directory,
//! this binary's measurement per role, and the policies the roles apply to each other.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use cloister_attest::sim::{MEASUREMENT_LEN, SimPlatform, SimVerifier, measure};
use cloister_attest::{Policy, TrustStore, VerifierSet};
use sha2::{Digest, Sha256};

/// A sim measurement.
pub type Measurement = [u8; MEASUREMENT_LEN];

/// Purpose string of keyvault's root sealing key.
pub const ROOT_SEALING_PURPOSE: &str = "keyvault-root";

/// Maximum age of peer evidence when it is checked (channels re-attest well within it).
pub const MAX_EVIDENCE_AGE_SECS: u64 = 120;

/// Digest of a role's security-relevant configuration in development mode. Everything that
/// changes what the role trusts goes into it, so a differently configured role measures
/// differently.
pub fn config_digest(role: &str) -> [u8; 32] {
    let cfg = format!(
        "cloister/dev-config/v1\0role={role}\0tee=sim\0allow_simulated=true\0max_evidence_age={MAX_EVIDENCE_AGE_SECS}"
    );
    Sha256::digest(cfg.as_bytes()).into()
}

/// Measurements of this executable for each of `roles`, reading it once.
pub fn measure_self(roles: &[&str]) -> anyhow::Result<Vec<Measurement>> {
    let exe = std::env::current_exe().context("cannot locate the running executable")?;
    let bytes = std::fs::read(&exe)
        .with_context(|| format!("cannot read {} to measure it", exe.display()))?;
    roles
        .iter()
        .map(|r| measure(&mut bytes.as_slice(), r, &config_digest(r)).context("measuring"))
        .collect()
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
    fn roles_measure_differently_and_the_policy_lists_them() {
        let m = measure_self(&["executor", "keyvault"]).unwrap();
        assert_ne!(m[0], m[1]);
        assert_ne!(config_digest("executor"), config_digest("keyvault"));
        sim_policy(&m).unwrap();
    }
}
