//! The executor attestation policy as a registry entry (ARCHITECTURE §11): which executor
//! measurements (and TEE types, TCB, evidence age) keyvault releases secrets to. It is stored
//! under keyvault's MAC, changed only by an admin-signed [`RegistryChange::ExecutorPolicy`],
//! shared live with the attested channel (each handshake reads the current one), bound into
//! the attestation bundle, and checked again on every release so a removed measurement stops
//! receiving secrets at once, not at the next re-attestation.

use std::sync::{Arc, RwLock};

use cloister_attest::Policy;
use cloister_audit::{Action, AuditDraft};
use cloister_authority::IdentityId;
use cloister_vault_store::AuthorityWrite;
use serde::{Deserialize, Serialize};

use crate::authority::{Authority, Denied, lock};

const KIND: &str = "policy";
const KEY: &str = "executor";

/// The stored form of the executor policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Version: 1 at bootstrap, +1 per admin-signed change.
    pub version: u64,
    /// The policy document (YAML).
    pub policy: String,
    /// Who set it (`bootstrap` or an identity id).
    pub set_by: String,
}

/// The policy in force, shared with the channel.
pub(crate) struct Current {
    pub(crate) record: PolicyRecord,
    pub(crate) shared: Arc<RwLock<Policy>>,
}

fn parse(yaml: &str) -> Result<Policy, Denied> {
    let p = Policy::from_yaml(yaml).map_err(|e| Denied::Invalid(e.to_string()))?;
    match p.allowed_measurements_hex() {
        Some(m) if !m.is_empty() => Ok(p),
        _ => Err(Denied::Invalid(
            "an executor policy must list allowed_measurements (which builds may receive secrets)"
                .into(),
        )),
    }
}

impl Authority {
    /// Loads the stored executor policy; returns the live policy to hand to the channel.
    ///
    /// `bootstrap` (YAML) is stored as version 1 when there is none, and must be given only by
    /// the start that initialised the vault: on an initialised vault a missing policy row means
    /// someone deleted it (rows are MACed, their absence is not), and whoever starts keyvault
    /// must not get to choose the executors that receive secrets by doing so.
    pub async fn load_executor_policy(
        &self,
        bootstrap: Option<&str>,
    ) -> Result<Arc<RwLock<Policy>>, Denied> {
        let record = match self.load(KIND, KEY).await? {
            Some(bytes) => Self::decode::<PolicyRecord>(KIND, KEY, &bytes)?,
            None => {
                let Some(bootstrap) = bootstrap else {
                    tracing::error!(
                        "ALARM: keyvault's executor policy is missing from an initialised vault"
                    );
                    return Err(Denied::Tampered(
                        "the executor policy is missing from an initialised vault (deleted from \
                         the database, or keyvault stopped during its very first start); refusing \
                         to choose one: restore a backup"
                            .into(),
                    ));
                };
                let record = PolicyRecord {
                    version: 1,
                    policy: bootstrap.to_owned(),
                    set_by: "bootstrap".into(),
                };
                parse(bootstrap)?;
                let audit = AuditDraft::new("keyvault", Action::PolicySet, "executor")
                    .detail("version", 1)
                    .detail("bootstrap", true)
                    .detail("policy", bootstrap);
                self.store
                    .authority_write(
                        vec![AuthorityWrite {
                            row: self.row(KIND, KEY, Self::encode(&record)?),
                            expect: None,
                        }],
                        Some(audit),
                        None,
                    )
                    .await?;
                tracing::warn!("stored the bootstrap executor policy (version 1)");
                record
            }
        };
        let policy =
            parse(&record.policy).map_err(|_| Denied::Tampered("executor policy".into()))?;
        let shared = Arc::new(RwLock::new(policy));
        *lock(&self.policy) = Some(Current {
            record,
            shared: shared.clone(),
        });
        Ok(shared)
    }

    /// The policy in force (version and document), if loaded.
    pub fn executor_policy(&self) -> Option<PolicyRecord> {
        lock(&self.policy).as_ref().map(|c| c.record.clone())
    }

    /// The executor policy's version (0 before it is loaded).
    pub fn executor_policy_version(&self) -> u64 {
        lock(&self.policy).as_ref().map_or(0, |c| c.record.version)
    }

    /// Executor measurements (hex) keyvault releases to; empty before the policy is loaded.
    pub fn executor_measurements(&self) -> Vec<String> {
        lock(&self.policy)
            .as_ref()
            .and_then(|c| {
                c.shared
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .allowed_measurements_hex()
            })
            .unwrap_or_default()
    }

    /// Whether an executor attested with `measurement` (hex) may still receive secrets.
    pub fn executor_allowed(&self, measurement: &str) -> bool {
        lock(&self.policy).as_ref().is_some_and(|c| {
            c.shared
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .allows_measurement_hex(measurement)
        })
    }

    /// An admin replaces the executor policy (called with the write lock held).
    pub(crate) async fn set_executor_policy(
        &self,
        signer: &IdentityId,
        version: u64,
        yaml: &str,
    ) -> Result<u64, Denied> {
        let policy = parse(yaml)?;
        let (old, shared) = {
            let c = lock(&self.policy);
            let c = c
                .as_ref()
                .ok_or_else(|| Denied::Invalid("keyvault has no executor policy loaded".into()))?;
            (c.record.clone(), c.shared.clone())
        };
        if version != old.version + 1 {
            return Err(Denied::Invalid(format!(
                "the executor policy is at version {}; a change must name version {}, not {version}",
                old.version,
                old.version + 1
            )));
        }
        let record = PolicyRecord {
            version,
            policy: yaml.to_owned(),
            set_by: signer.to_string(),
        };
        let audit = AuditDraft::new(signer.to_string(), Action::PolicySet, "executor")
            .detail("version", version)
            .detail(
                "measurements",
                policy.allowed_measurements_hex().unwrap_or_default(),
            )
            .detail("policy", yaml);
        self.store
            .authority_write(
                vec![AuthorityWrite {
                    row: self.row(KIND, KEY, Self::encode(&record)?),
                    expect: Some(Self::encode(&old)?),
                }],
                Some(audit),
                None,
            )
            .await
            .map_err(|e| match e {
                cloister_vault_store::StoreError::Conflict(_) => {
                    tracing::error!(
                        "ALARM: keyvault's executor policy row changed in the database"
                    );
                    Denied::Tampered("executor policy".into())
                }
                e => e.into(),
            })?;
        *shared.write().unwrap_or_else(|p| p.into_inner()) = policy;
        if let Some(c) = lock(&self.policy).as_mut() {
            c.record = record;
        }
        tracing::warn!(version, "executor policy changed");
        Ok(version)
    }
}
