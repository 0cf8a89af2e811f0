//! The attestation bundle clients verify before sealing secrets to keyvault.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister_attest::attester::Attester;
use cloister_rpc::keyvault::{AttestationBundle, FleetKey};
use cloister_types::binding::{FleetKeyBinding, bundle_report_data};

use crate::vault::Vault;

/// How long one piece of bundle evidence is served before fresh evidence is produced.
pub const BUNDLE_REFRESH: Duration = Duration::from_secs(30);

/// Produces (and briefly caches) keyvault's attestation bundle.
pub struct BundleSource {
    attester: Arc<dyn Attester>,
    hpke_public_key: Vec<u8>,
    audit_public_key: Vec<u8>,
    sim_root_fingerprint: String,
    vault: Arc<Vault>,
    cached: Mutex<Option<(Instant, AttestationBundle)>>,
    /// Public fleet keys of one generation by epoch: an unauthenticated bundle request never
    /// derives a private key it already derived.
    fleet: Mutex<(u64, Vec<FleetKey>)>,
}

impl BundleSource {
    /// A source for `vault`'s keys and the executor allowlist keyvault enforces (read from
    /// its executor policy each time, so a policy change shows in the next bundle).
    pub fn new(
        attester: Arc<dyn Attester>,
        vault: Arc<Vault>,
        sim_root_fingerprint: String,
    ) -> Self {
        Self {
            attester,
            hpke_public_key: vault.hpke_public().0.to_vec(),
            audit_public_key: vault.audit_public().0.to_vec(),
            sim_root_fingerprint,
            vault,
            cached: Mutex::new(None),
            fleet: Mutex::new((0, Vec::new())),
        }
    }

    /// The public fleet keys valid at `now`, newest first (derived once per epoch).
    fn fleet_keys(&self, now: u64) -> Result<Vec<FleetKey>, cloister_attest::AttestError> {
        let epochs = crate::fleet::epochs_valid_at(now);
        let generation = self.vault.fleet_generation();
        let mut cache = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
        let (cached_generation, known) = &mut *cache;
        if *cached_generation != generation {
            known.clear();
            *cached_generation = generation;
        }
        known.retain(|k| epochs.contains(&k.epoch));
        let mut out = Vec::with_capacity(epochs.len());
        for e in epochs {
            if let Some(k) = known.iter().find(|k| k.epoch == e) {
                out.push(k.clone());
                continue;
            }
            let pair = self
                .vault
                .fleet_key(generation, e)
                .map_err(|err| cloister_attest::AttestError::Unsupported(err.to_string()))?;
            let p = crate::fleet::public_of(&pair, e);
            let k = FleetKey {
                key_id: p.key_id.to_vec(),
                epoch: e,
                public_key: p.public.0.to_vec(),
                suite: cloister_crypto::hpke_seal::SUITE.to_owned(),
                not_before: p.not_before,
                not_after: p.not_after,
            };
            known.push(k.clone());
            out.push(k);
        }
        Ok(out)
    }

    /// The current bundle, with evidence at most [`BUNDLE_REFRESH`] old.
    pub fn bundle(&self) -> Result<AttestationBundle, cloister_attest::AttestError> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let registry = self.vault.authority().registry_digest();
        let executors = self.vault.authority().executor_measurements();
        let now = cloister_authority::request::unix_now();
        let fleet = self.fleet_keys(now)?;
        if let Some((at, b)) = cached.as_ref()
            && at.elapsed() < BUNDLE_REFRESH
            && b.registry_digest == registry
            && b.executor_measurements == executors
            && b.fleet_keys == fleet
        {
            return Ok(b.clone());
        }
        let bindings: Vec<FleetKeyBinding<'_>> = fleet
            .iter()
            .map(|k| FleetKeyBinding {
                key_id: &k.key_id,
                epoch: k.epoch,
                public_key: &k.public_key,
                suite: &k.suite,
                not_before: k.not_before,
                not_after: k.not_after,
            })
            .collect();
        let rd = bundle_report_data(
            &self.hpke_public_key,
            &self.audit_public_key,
            &executors,
            &registry,
            &bindings,
        );
        let produced = self.attester.attest(&rd)?;
        let tee = self.attester.tee();
        let b = AttestationBundle {
            tee: tee.as_str().to_owned(),
            tee_label: tee.label().to_owned(),
            evidence: produced.evidence,
            hpke_public_key: self.hpke_public_key.clone(),
            hpke_suite: cloister_crypto::hpke_seal::SUITE.to_owned(),
            audit_public_key: self.audit_public_key.clone(),
            executor_measurements: executors,
            sim_root_fingerprint: self.sim_root_fingerprint.clone(),
            registry_digest: registry.to_vec(),
            admins: self.vault.authority().admins(),
            fleet_keys: fleet.clone(),
        };
        *cached = Some((Instant::now(), b.clone()));
        Ok(b)
    }
}
