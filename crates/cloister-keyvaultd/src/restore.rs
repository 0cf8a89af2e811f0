//! `restore-plan` and `restore`: accepting a database put back from a backup happens inside
//! keyvault, which alone can unseal it. The CLI copies the file into place, asks keyvault
//! for the plan (the epoch and audit head to sign, for this instance), has an admin sign it,
//! and hands the signature back; keyvault checks it against the deployment being replaced.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use cloister_authority::ops::Restore;
use cloister_role::files::{GUARD_FILE, KEYVAULT_DATABASE_FILE};
use serde::{Deserialize, Serialize};

/// What `restore-plan` prints (JSON): what an admin signs to accept the restored database.
#[derive(Debug, Serialize, Deserialize)]
pub struct RestorePlan {
    /// keyvault's instance key (hex), which the signed request must name.
    pub platform: String,
    /// The request body to sign.
    pub restore: Restore,
}

/// What `restore` prints (JSON) once it accepted the database.
#[derive(Debug, Serialize, Deserialize)]
pub struct Restored {
    /// The anti-rollback epoch the restored database starts.
    pub epoch: u64,
}

/// Largest signed request read from stdin.
const MAX_SIGNED_BYTES: u64 = 64 * 1024;

async fn open(data_dir: &Path) -> anyhow::Result<cloister_keyvault::Vault> {
    cloister_role::harden::trusted_process()?;
    let sealing = crate::migrate::sealing(data_dir)?;
    let db = data_dir.join(KEYVAULT_DATABASE_FILE);
    let store = cloister_vault_store::SqliteVault::open(&db)
        .with_context(|| format!("{} is not a keyvault database", db.display()))?;
    cloister_keyvault::Vault::open_for_restore(
        Arc::new(store),
        &sealing,
        &data_dir.join(GUARD_FILE),
    )
    .await
    .context("cannot unseal the restored database with this keyvault build and platform")
}

/// Prints the [`RestorePlan`] for the database in `data_dir`.
pub async fn plan(data_dir: &Path) -> anyhow::Result<()> {
    let vault = open(data_dir).await?;
    let (seq, hash) = vault.audit_head().await?;
    let plan = RestorePlan {
        platform: vault.platform().to_owned(),
        restore: Restore {
            epoch: vault.restore_base_epoch().await? + 1,
            audit_head_seq: seq,
            audit_head_hash: hash,
        },
    };
    println!("{}", serde_json::to_string(&plan)?);
    Ok(())
}

/// Reads an admin-signed [`Restore`] from stdin and applies it; prints [`Restored`].
pub async fn apply(data_dir: &Path) -> anyhow::Result<()> {
    let vault = open(data_dir).await?;
    let mut signed = Vec::new();
    std::io::stdin()
        .take(MAX_SIGNED_BYTES + 1)
        .read_to_end(&mut signed)
        .context("cannot read the signed restore from stdin")?;
    if signed.len() as u64 > MAX_SIGNED_BYTES {
        bail!("the signed restore is over {MAX_SIGNED_BYTES} bytes");
    }
    let st = vault
        .restore(&signed)
        .await
        .context("keyvault refused the restore")?;
    println!("{}", serde_json::to_string(&Restored { epoch: st.epoch })?);
    Ok(())
}
