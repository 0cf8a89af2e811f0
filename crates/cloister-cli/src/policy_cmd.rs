//! `cloister keyvault policy show|set`: the executor attestation policy, a registry entry only
//! admin-signed requests change.

use anyhow::Context;
use cloister_authority::ops::RegistryChange;

use crate::cli::{Conn, PolicyCommand};
use crate::output;

/// Runs `keyvault policy ...`.
pub async fn run(conn: &Conn, cmd: PolicyCommand, json_mode: bool) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Show { trust } => {
            let reg = crate::identity_cmd::checked_registry(conn, &trust).await?;
            let p = reg
                .executor_policy
                .context("keyvault reports no executor policy")?;
            if json_mode {
                output::json(&p);
            } else {
                println!(
                    "executor policy version {} (set by {}); releases secrets to:",
                    p.version, p.set_by
                );
                for m in &p.measurements {
                    println!("  {m}");
                }
                println!("---");
                print!("{}", p.policy);
            }
        }
        PolicyCommand::Set { file, trust } => {
            let yaml = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            // Refuse locally what keyvault would refuse, with the parser's location.
            let parsed = cloister_attest::Policy::from_yaml(&yaml)
                .with_context(|| format!("{} is not a valid policy", file.display()))?;
            if parsed
                .allowed_measurements_hex()
                .is_none_or(|m| m.is_empty())
            {
                anyhow::bail!("an executor policy must list allowed_measurements");
            }
            let reg = crate::identity_cmd::checked_registry(conn, &trust).await?;
            let current = reg.executor_policy.map_or(0, |p| p.version);
            let me = crate::identity_cmd::require(conn.identity.as_deref())?;
            let mut c = crate::secret_cmd::verified_signer(conn, me, &trust).await?;
            let r = c
                .change_registry(&RegistryChange::ExecutorPolicy {
                    version: current + 1,
                    policy: yaml,
                })
                .await?;
            if json_mode {
                output::json(&r);
            } else {
                println!(
                    "executor policy is now version {}; allowed: {}",
                    r.policy_version.unwrap_or(current + 1),
                    parsed
                        .allowed_measurements_hex()
                        .unwrap_or_default()
                        .join(", ")
                );
            }
        }
    }
    Ok(())
}
