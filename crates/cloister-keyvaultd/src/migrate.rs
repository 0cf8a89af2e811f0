//! `cloister-keyvaultd migrate`: re-seal keyvault's root to this executable with the
//! recovery key (the explicit path after an upgrade; the platform must be stopped).

use anyhow::{Context, bail};
use cloister_role::tee;

use crate::args::MigrateArgs;

/// The sealing of this executable on the platform of `data_dir`.
pub fn sealing(data_dir: &std::path::Path) -> anyhow::Result<cloister_keyvault::Sealing> {
    let platform_file = data_dir.join(cloister_attest::sim::PLATFORM_FILE);
    if !platform_file.exists() {
        bail!(
            "{} does not exist: is {} a Cloister data directory?",
            platform_file.display(),
            data_dir.display()
        );
    }
    let (platform, _) = tee::platform(data_dir)?;
    let m = tee::measure_running(tee::KEYVAULT_ROLE, &tee::keyvault_config_digest())?;
    Ok(cloister_keyvault::Sealing {
        measurement: m,
        key: platform.sealing_key(&m, tee::ROOT_SEALING_PURPOSE)?,
    })
}

/// What `migrate --json` prints.
#[derive(serde::Serialize)]
struct Migrated {
    /// The measurement the root was sealed to (hex).
    from: String,
    /// This executable's measurement, which it is sealed to now (hex).
    to: String,
}

/// Runs `migrate`.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    // It holds the root and the recovery key: no core dump, no ptrace, no swap.
    cloister_role::harden::trusted_process()?;
    let recovery = crate::recovery::read(args.recovery_key_file.as_deref())?;
    let sealing = sealing(&args.data_dir)?;
    let location = cloister_role::files::role_database(
        &args.data_dir,
        cloister_role::files::KEYVAULT_DATABASE_FILE,
        args.database_url
            .as_ref()
            .map(cloister_db::DatabaseUrl::expose),
    )?;
    let store = cloister_vault_store::open(&location)
        .await
        .with_context(|| format!("cannot open keyvault's store at {location}"))?;
    let from = cloister_keyvault::migrate(store, &recovery, &sealing).await?;
    let to = hex::encode(sealing.measurement);
    if args.json {
        println!("{}", serde_json::to_string(&Migrated { from, to })?);
    } else {
        println!("re-sealed keyvault's root key: measurement {from} -> {to}");
    }
    Ok(())
}
