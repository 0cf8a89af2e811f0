//! `cloister-keyvaultd run`: unseal (or initialise) the vault, then serve the gateway's RPC
//! and executors' attested channels.

use std::io::{IsTerminal, Read};
use std::sync::Arc;

use anyhow::{Context, bail};
use cloister_role::tee;

use crate::args::RunArgs;

use cloister_role::files::{GUARD_FILE, KEYVAULT_DATABASE_FILE};

/// Runs keyvault until SIGINT/SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    cloister_role::harden::trusted_process()?;
    let creds = args.role.credentials()?;
    let rpc = args.role.listener().await?;
    let channel =
        cloister_role::listen::listen_on(args.channel_listen, args.channel_listen_fd).await?;
    let data_dir = &args.role.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let (platform, created) = tee::platform(data_dir)?;
    if created {
        tracing::warn!(fingerprint = %platform.fingerprint_hex(), "created a new sim platform");
    }
    let m = tee::measure_running(tee::KEYVAULT_ROLE, &tee::keyvault_config_digest())?;
    let sealing = cloister_keyvault::Sealing {
        measurement: m,
        key: platform.sealing_key(&m, tee::ROOT_SEALING_PURPOSE)?,
    };
    let location = cloister_role::files::role_database(
        data_dir,
        KEYVAULT_DATABASE_FILE,
        args.database_url
            .as_ref()
            .map(cloister_db::DatabaseUrl::expose)
            .or(creds.optional("database")),
    )?;
    let store = cloister_vault_store::open(&location)
        .await
        .with_context(|| format!("cannot open keyvault's store at {location}"))?;
    tracing::info!(store = %location, "keyvault's store");
    let bootstrap = match &args.bootstrap_admin {
        Some(h) => Some(
            hex::decode(h.trim())
                .ok()
                .and_then(|b| cloister_crypto::VerifyingKey::from_slice(&b).ok())
                .context("--bootstrap-admin must be a hex Ed25519 public key")?,
        ),
        None => None,
    };
    let root = cloister_vault_store::VaultStore::vault_root(store.as_ref()).await?;
    // A first start shows the recovery key once: refuse before initialising when it could
    // only land in a log.
    if root.is_none() && args.recovery_key_file.is_none() && !std::io::stderr().is_terminal() {
        bail!(
            "keyvault would initialise, but stderr is not a terminal and no --recovery-key-file \
             was given: the recovery key would land in a log. Pass --recovery-key-file FILE \
             (created 0600) or run it on a terminal."
        );
    }
    if root.is_none() && args.bootstrap_executors.is_empty() {
        bail!(
            "keyvault would initialise, and its first executor policy comes from \
             --bootstrap-executor-measurement HEX (at least one; `cloister attest measure --role \
             executor` prints it). Afterwards only an admin-signed change moves it."
        );
    }
    if let (Some(rec), Some(approval)) = (&root, &args.dev_reseal_approval)
        && rec.measurement != hex::encode(m)
    {
        dev_reseal(store.clone(), &args, approval, &sealing).await?;
    }
    let guard = data_dir.join(GUARD_FILE);
    let (vault, opened) =
        match cloister_keyvault::Vault::open_guarded(store, &sealing, bootstrap.as_ref(), &guard)
            .await
        {
            Ok(v) => v,
            Err(cloister_keyvault::VaultError::Keys(
                e @ cloister_keyvault::KeyvaultError::Unseal { .. },
            )) => {
                bail!(
                    "{e}\nThis keyvault executable is not the one its state was sealed to (an \
                 upgrade?). Stop the platform and run `cloister keyvault migrate --data-dir {}` \
                 with the recovery key printed at initialisation.",
                    data_dir.display()
                )
            }
            Err(e) if e.code() == cloister_types::ErrorCode::RollbackDetected => {
                bail!(
                    "refusing to start: {e}\nTo accept a database restored on purpose, stop the \
                 platform and run `cloister keyvault restore --data-dir {} --from <backup>` \
                 with an admin identity.",
                    data_dir.display()
                )
            }
            Err(e) => return Err(e).context("cannot open keyvault's state"),
        };
    // The bootstrap executor policy is stored by the start that initialises the vault, and
    // by no other: see `load_executor_policy`.
    let bootstrap_policy = match opened {
        cloister_keyvault::Opened::Created(recovery) => {
            crate::recovery::show(&recovery.reveal(), args.recovery_key_file.as_deref())?;
            Some(tee::sim_policy_yaml(&args.bootstrap_executors))
        }
        cloister_keyvault::Opened::Unsealed => {
            tracing::info!(
                "unsealed keyvault's root key (measurement {})",
                hex::encode(m)
            );
            None
        }
    };
    let vault = Arc::new(vault);
    let attester: Arc<dyn cloister_attest::attester::Attester> = Arc::new(
        cloister_attest::sim::SimAttester::new(platform.clone(), tee::KEYVAULT_ROLE, m),
    );
    // The executor policy is a registry entry: the bootstrap measurements are stored at
    // first start only; afterwards only an admin-signed change moves it.
    let executor_policy = vault
        .authority()
        .load_executor_policy(bootstrap_policy.as_deref())
        .await
        .context("cannot load keyvault's executor policy")?;
    let allowed = vault.authority().executor_measurements();
    tracing::warn!(
        executor_measurements = ?allowed,
        "releasing secrets to executors with these measurements only (tee: sim, no hardware protection)"
    );
    let mut cfg = cloister_channel::ChannelConfig::new(
        tee::KEYVAULT_ROLE,
        attester.clone(),
        tee::verifiers(&platform)?,
    )
    .accept_peer_shared(tee::EXECUTOR_ROLE, executor_policy);
    cfg.max_attestation_age = std::time::Duration::from_secs(tee::MAX_EVIDENCE_AGE_SECS / 2);
    let bundle = Arc::new(cloister_keyvault::bundle::BundleSource::new(
        attester,
        vault.clone(),
        platform.fingerprint_hex(),
    ));
    tracing::info!(
        rpc = %rpc.local_addr()?,
        channel = %channel.local_addr()?,
        measurement = %hex::encode(m),
        tee = "sim",
        "keyvault listening (simulated TEE: not confidential)"
    );
    cloister_keyvault::server::serve(
        rpc,
        channel,
        vault,
        bundle,
        cfg,
        creds.get("gateway")?,
        cloister_role::listen::stop_signal(),
    )
    .await?;
    tracing::info!("keyvault stopped");
    Ok(())
}

/// Largest signed approval read (they are a few hundred bytes).
const MAX_APPROVAL_BYTES: u64 = 64 * 1024;

/// DEVELOPMENT ONLY: the root is sealed to another keyvault build; re-seal it to this one
/// with the recovery key, as an admin's signed approval allows (keyvault checks the
/// signature against its registry, and the approval names both measurements).
async fn dev_reseal(
    store: Arc<dyn cloister_vault_store::KeyvaultStore>,
    args: &RunArgs,
    approval: &std::path::Path,
    sealing: &cloister_keyvault::Sealing,
) -> anyhow::Result<()> {
    let recovery = crate::recovery::read(args.recovery_key_file.as_deref())?;
    let mut signed = Vec::new();
    std::fs::File::open(approval)
        .and_then(|f| std::io::Read::take(f, MAX_APPROVAL_BYTES + 1).read_to_end(&mut signed))
        .with_context(|| format!("cannot read the approval {}", approval.display()))?;
    if signed.len() as u64 > MAX_APPROVAL_BYTES {
        bail!(
            "{} is not an approval (over {MAX_APPROVAL_BYTES} bytes)",
            approval.display()
        );
    }
    let guard = args.role.data_dir.join(GUARD_FILE);
    let from = cloister_keyvault::reseal_approved(store, &recovery, sealing, &signed, &guard)
        .await
        .context("the development re-seal was refused")?;
    tracing::warn!(
        from = %from,
        to = %hex::encode(sealing.measurement),
        "DEVELOPMENT ONLY: re-sealed keyvault's root to this build with the recovery key, as the \
         admin's signed approval allows; production never does this (`cloister keyvault migrate`)"
    );
    Ok(())
}
