//! The executor's run: measure itself (with the worker it will run and the keyvaults it
//! trusts), then serve the gateway's RPC.

use std::sync::Arc;

use anyhow::Context;
use cloister_executor::ExecutorConfig;
use cloister_executor::image::WorkerImage;
use cloister_executor::keyvault_client::KeyvaultSecrets;
use cloister_executor::secrets::{SecretSource, StaticManifests};
use cloister_role::tee;
use cloister_role::trusted::WORKER_BIN;

use crate::args::RunArgs;

/// Runs the executor until SIGINT/SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    cloister_role::harden::trusted_process()?;
    let creds = args.role.credentials()?;
    let listener = args.role.listener().await?;
    let worker_path = match &args.worker {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("cannot locate this executable")?
            .with_file_name(WORKER_BIN),
    };
    // Read once: every worker runs these bytes, whatever happens to the file later.
    let image = WorkerImage::load(&worker_path)?;
    let config = tee::executor_config_digest(&tee::ExecutorSettings {
        worker: *image.sha384(),
        keyvaults: args.keyvaults.clone(),
        secrets_ttl_secs: args.secrets_ttl_secs,
        worker_uids: args.worker_uids.clone(),
    });
    let m = tee::measure_running(tee::EXECUTOR_ROLE, &config)?;
    let (platform, _) = tee::platform(&args.role.data_dir)?;
    let attester = Arc::new(cloister_attest::sim::SimAttester::new(
        platform.clone(),
        tee::EXECUTOR_ROLE,
        m,
    ));
    tracing::info!(
        measurement = %hex::encode(m),
        worker = %worker_path.display(),
        worker_sha384 = %hex::encode(image.sha384()),
        "executor identity (simulated TEE)"
    );
    // Receipts are signed by a key born here and certified by this executor's evidence.
    let notary = Arc::new(
        cloister_executor::receipt::Notary::new(attester.as_ref())
            .context("cannot certify the receipt key")?,
    );
    // The same identity proves this executor to the gateway (one-way attested link).
    let links = Arc::new(cloister_executor::link::Links::new(Some(attester.clone())));
    let mut reads = None;
    let keyring = Arc::new(cloister_executor::fleet::FleetKeyring::default());
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let door = Arc::new(cloister_executor::sealed::SealedDoor::new(
        keyring.clone(),
        started_at,
    ));
    let secrets: Arc<dyn SecretSource> = match &args.keyvault_addr {
        Some(addr) => {
            let mut cfg = cloister_channel::ChannelConfig::new(
                tee::EXECUTOR_ROLE,
                attester,
                tee::verifiers(&platform)?,
            )
            .accept_peer(tee::KEYVAULT_ROLE, tee::sim_policy(&args.keyvaults)?);
            cfg.max_attestation_age =
                std::time::Duration::from_secs(tee::MAX_EVIDENCE_AGE_SECS / 2);
            let connector = cloister_channel::ChannelConnector::new(Arc::new(cfg))?;
            tracing::info!(
                keyvault = %addr,
                trusted = ?args.keyvaults.iter().map(hex::encode).collect::<Vec<_>>(),
                "fetching secrets from keyvault builds with these measurements only"
            );
            let kv = Arc::new(KeyvaultSecrets::new(
                addr.clone(),
                connector,
                std::time::Duration::from_secs(args.secrets_ttl_secs),
            ));
            // Every read of secrets (cache hits included) is recorded by keyvault in batches.
            reads = Some((
                kv.clone(),
                kv.spawn_read_flusher(),
                spawn_fleet_refresh(kv.clone(), keyring),
            ));
            kv
        }
        None => {
            tracing::warn!(
                "no --keyvault-addr: no manifest can be verified, so every invocation is refused"
            );
            Arc::new(StaticManifests::default())
        }
    };
    let mut cfg = ExecutorConfig::new(image.exec_path().to_path_buf());
    cfg.worker_uids = args.worker_uids.clone();
    let sup = cloister_executor::pool::Supervisor::new(cfg, secrets);
    tracing::info!(
        addr = %listener.local_addr()?,
        tee = "sim",
        "executor listening (simulated TEE: not confidential)"
    );
    cloister_executor::service::serve(
        listener,
        sup,
        links,
        door,
        Some(notary),
        creds.get("gateway")?,
        cloister_role::listen::stop_signal(),
    )
    .await?;
    if let Some((kv, flusher, fleet)) = reads {
        flusher.abort();
        fleet.abort();
        if let Err(e) = kv.flush_reads(true).await {
            tracing::error!(error = %e, "the last secret reads could not be recorded by keyvault");
        }
    }
    // The image (and the descriptor workers are started from) lives until here.
    drop(image);
    tracing::info!("executor stopped");
    Ok(())
}

/// How often the fleet keys are fetched again (keys rotate daily, with an hour of overlap);
/// also right after each rotation.
const FLEET_REFRESH: std::time::Duration = std::time::Duration::from_secs(600);
/// Longest wait between failed fetches (they back off from one second).
const FLEET_MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(600);

/// Until the next refresh: [`FLEET_REFRESH`], or just past the next rotation if sooner.
fn next_refresh(now: u64) -> std::time::Duration {
    let period = cloister_executor::fleet::ROTATION_SECS;
    let to_rotation = period - now % period + 1;
    FLEET_REFRESH.min(std::time::Duration::from_secs(to_rotation))
}

/// Holds the fleet (invocation) keys keyvault releases to this attested executor: fetched at
/// start, every [`FLEET_REFRESH`], right after each rotation and when a request names a key
/// not held (keyvault replaced them); failures back off (each refused attempt is audited by
/// keyvault, so an unapproved build must not hammer it). A refusal drops every key held.
fn spawn_fleet_refresh(
    kv: Arc<KeyvaultSecrets>,
    keyring: Arc<cloister_executor::fleet::FleetKeyring>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = std::time::Duration::from_secs(1);
        loop {
            let wait = match kv.fleet_keys().await {
                Ok(keys) => {
                    backoff = std::time::Duration::from_secs(1);
                    keyring.replace(keys);
                    tracing::info!(keys = ?keyring.key_ids(), "holding fleet keys (key id @ epoch)");
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    (next_refresh(now), true)
                }
                Err(e) => {
                    // keyvault refused this build (its policy changed): drop every key. A
                    // transient failure keeps them until they expire.
                    if let cloister_executor::secrets::SecretError::Refused { code, .. } = &e
                        && matches!(
                            code,
                            cloister_types::ErrorCode::AttestationFailed
                                | cloister_types::ErrorCode::Forbidden
                        )
                    {
                        keyring.clear();
                    }
                    if backoff >= std::time::Duration::from_secs(8) {
                        tracing::warn!(error = %e, retry_in = ?backoff, "cannot fetch the fleet keys");
                    }
                    let wait = backoff;
                    backoff = (backoff * 2).min(FLEET_MAX_BACKOFF);
                    (wait, false)
                }
            };
            let (wait, early_allowed) = wait;
            // A request under an unknown key cuts the wait short after a success; after a
            // failure the back-off holds (every refused attempt is audited).
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = async {
                    keyring.refresh_wanted().await;
                    tokio::time::sleep(MIN_EARLY_REFRESH).await;
                }, if early_allowed => {}
            }
        }
    })
}

/// Delay before a refresh a request asked for (requests arriving together share it).
const MIN_EARLY_REFRESH: std::time::Duration = std::time::Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_lands_just_after_a_rotation() {
        let period = cloister_executor::fleet::ROTATION_SECS;
        let e = 20_000 * period;
        assert_eq!(next_refresh(e + 5), FLEET_REFRESH);
        assert_eq!(next_refresh(e + period - 30).as_secs(), 31);
        assert_eq!(next_refresh(e - 1).as_secs(), 2);
    }
}
