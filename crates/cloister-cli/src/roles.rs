//! The gateway and executor processes (started by `serve`, or separately in production).

use std::io::IsTerminal;
use std::os::fd::FromRawFd;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use cloister_executor::ExecutorConfig;
use cloister_executor::keyvault_client::KeyvaultSecrets;
use cloister_executor::secrets::{SecretSource, StaticManifests};
use cloister_gateway::AppState;
use cloister_gateway::bootstrap::{AdminToken, ensure_admin_token};
use cloister_gateway::executor::Executor;
use cloister_store::SqliteStore;
use cloister_types::ServerLimits;
use tokio::net::TcpListener;

use crate::cli::{ExecutorArgs, GatewayArgs, KeyvaultArgs, RoleArgs};
use crate::tee;

/// File name of the development admin token inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// File name of the SQLite database inside the data directory.
pub const DATABASE_FILE: &str = "cloister.db";

/// File name of keyvault's rollback guard in the data directory.
pub const GUARD_FILE: &str = "keyvault.guard";

async fn listener(role: &RoleArgs) -> anyhow::Result<TcpListener> {
    listen_on(role.listen, role.listen_fd).await
}

async fn listen_on(
    addr: Option<std::net::SocketAddr>,
    fd: Option<i32>,
) -> anyhow::Result<TcpListener> {
    match (addr, fd) {
        (_, Some(fd)) => {
            // SAFETY: `serve` passes a listening socket at this descriptor, owned by no one else.
            let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            std.set_nonblocking(true).context("inherited listener")?;
            Ok(TcpListener::from_std(std)?)
        }
        (Some(addr), None) => TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}")),
        (None, None) => bail!("either --listen or --listen-fd is required"),
    }
}

fn credentials(role: &RoleArgs) -> anyhow::Result<crate::credentials::Credentials> {
    crate::credentials::load(role.credentials_fd, role.credentials_file.as_deref())
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the gateway role.
pub async fn gateway(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let creds = credentials(&args.role)?;
    let listener = listener(&args.role).await?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let db = args.data_dir.join(DATABASE_FILE);
    let store =
        SqliteStore::open(&db).with_context(|| format!("cannot open database {}", db.display()))?;
    if args.bootstrap_admin_token {
        let path = args.data_dir.join(ADMIN_TOKEN_FILE);
        match ensure_admin_token(&store, &path).await? {
            AdminToken::Created => tracing::info!(path = %path.display(), "created admin token"),
            AdminToken::Existing => {}
            AdminToken::Stale => tracing::warn!(
                path = %path.display(),
                "the admin token file holds a token that is revoked or unknown to this database; delete the file and restart to create a new one"
            ),
        }
    }
    let mut executor = Executor::connect_lazy(&args.executor_url, creds.get("executor")?)?;
    let keyvault = match &args.keyvault_url {
        Some(url) => Some(cloister_gateway::keyvault::Keyvault::connect_lazy(
            url,
            creds.get("keyvault")?,
        )?),
        None => {
            tracing::warn!("no --keyvault-url: secrets and attestation answer `unavailable`");
            None
        }
    };
    match (&args.executor_sim_root, &keyvault) {
        (Some(root), Some(kv)) => {
            executor = executor.require_attestation(cloister_gateway::executor_link::LinkTrust {
                sim_root: root.clone(),
                keyvault: kv.clone(),
            });
            tracing::info!(
                sim_root = %root,
                "invocations go only to an executor that proves itself (attested link)"
            );
        }
        (Some(_), None) => bail!("--executor-sim-root needs --keyvault-url (its executor policy)"),
        (None, _) => tracing::warn!(
            "no --executor-sim-root: the executor is NOT attested to the gateway; its responses are \
             trusted as they arrive"
        ),
    }
    let store = Arc::new(store);
    let audit = Arc::new(cloister_gateway::audit_relay::RelayedAudit::new(
        store.clone(),
        keyvault.clone(),
    ));
    let mut edge = args.edge.config();
    edge.max_connections = crate::harden::room_for_connections(edge.max_connections);
    let state = AppState::new(
        store,
        audit,
        executor,
        keyvault,
        ServerLimits::default(),
        edge.rate,
    );
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    cloister_gateway::serve(listener, state, edge, stop_signal()).await?;
    tracing::info!("gateway stopped");
    Ok(ExitCode::SUCCESS)
}

/// Runs the executor role.
pub async fn executor(args: ExecutorArgs) -> anyhow::Result<ExitCode> {
    crate::harden::trusted_process()?;
    let creds = credentials(&args.role)?;
    let listener = listener(&args.role).await?;
    let exe = std::env::current_exe().context("cannot locate the cloister binary for workers")?;
    let mut reads = None;
    let (platform, _) = tee::platform(&args.data_dir)?;
    let m = tee::measure_self(&["executor", "keyvault"])?;
    let attester = Arc::new(cloister_attest::sim::SimAttester::new(
        platform.clone(),
        "executor",
        m[0],
    ));
    // The same identity proves this executor to the gateway (one-way attested link).
    let links = Arc::new(cloister_executor::link::Links::new(Some(attester.clone())));
    let secrets: Arc<dyn SecretSource> = match &args.keyvault_addr {
        Some(addr) => {
            let mut cfg = cloister_channel::ChannelConfig::new(
                "executor",
                attester,
                tee::verifiers(&platform)?,
            )
            .accept_peer("keyvault", tee::sim_policy(&m[1..])?);
            cfg.max_attestation_age =
                std::time::Duration::from_secs(tee::MAX_EVIDENCE_AGE_SECS / 2);
            let connector = cloister_channel::ChannelConnector::new(Arc::new(cfg))?;
            tracing::info!(
                measurement = %hex::encode(m[0]),
                keyvault = %addr,
                "executor identity (simulated TEE); expecting keyvault measurement {}",
                hex::encode(m[1])
            );
            let kv = Arc::new(KeyvaultSecrets::new(
                addr.clone(),
                connector,
                std::time::Duration::from_secs(args.secrets_ttl_secs),
            ));
            // Every read of secrets (cache hits included) is recorded by keyvault in batches.
            reads = Some((kv.clone(), kv.spawn_read_flusher()));
            kv
        }
        None => {
            tracing::warn!(
                "no --keyvault-addr: no manifest can be verified, so every invocation is refused"
            );
            Arc::new(StaticManifests::default())
        }
    };
    let mut cfg = ExecutorConfig::new(exe);
    cfg.worker_uids = args.workers.range()?;
    let sup = cloister_executor::pool::Supervisor::new(cfg, secrets);
    tracing::info!(addr = %listener.local_addr()?, tee = "sim", "executor listening (simulated TEE: not confidential)");
    cloister_executor::service::serve(listener, sup, links, creds.get("gateway")?, stop_signal())
        .await?;
    if let Some((kv, flusher)) = reads {
        flusher.abort();
        if let Err(e) = kv.flush_reads(true).await {
            tracing::error!(error = %e, "the last secret reads could not be recorded by keyvault");
        }
    }
    tracing::info!("executor stopped");
    Ok(ExitCode::SUCCESS)
}

/// Runs the keyvault role: unseal (or initialise) the vault, then serve the gateway's RPC
/// and executors' attested channels.
pub async fn keyvault(args: KeyvaultArgs) -> anyhow::Result<ExitCode> {
    crate::harden::trusted_process()?;
    let creds = credentials(&args.role)?;
    let rpc = listener(&args.role).await?;
    let channel = listen_on(args.channel_listen, args.channel_listen_fd).await?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let (platform, created) = tee::platform(&args.data_dir)?;
    if created {
        tracing::warn!(fingerprint = %platform.fingerprint_hex(), "created a new sim platform");
    }
    let m = tee::measure_self(&["keyvault", "executor"])?;
    let sealing = cloister_keyvault::Sealing {
        measurement: m[0],
        key: platform.sealing_key(&m[0], tee::ROOT_SEALING_PURPOSE)?,
    };
    let db = args.data_dir.join(DATABASE_FILE);
    let store =
        SqliteStore::open(&db).with_context(|| format!("cannot open database {}", db.display()))?;
    let bootstrap = match &args.bootstrap_admin {
        Some(h) => Some(
            hex::decode(h.trim())
                .ok()
                .and_then(|b| cloister_crypto::VerifyingKey::from_slice(&b).ok())
                .context("--bootstrap-admin must be a hex Ed25519 public key")?,
        ),
        None => None,
    };
    // A first start shows the recovery key once: refuse before initialising when it could
    // only land in a log.
    let fresh = cloister_store::VaultStore::vault_root(&store)
        .await?
        .is_none();
    if fresh && args.recovery_key_file.is_none() && !std::io::stderr().is_terminal() {
        bail!(
            "keyvault would initialise, but stderr is not a terminal and no --recovery-key-file \
             was given: the recovery key would land in a log. Pass --recovery-key-file FILE \
             (created 0600) or run it on a terminal."
        );
    }
    let guard = args.data_dir.join(GUARD_FILE);
    let (vault, opened) = match cloister_keyvault::Vault::open_guarded(
        Arc::new(store),
        &sealing,
        bootstrap.as_ref(),
        &guard,
    )
    .await
    {
        Ok(v) => v,
        Err(cloister_keyvault::VaultError::Keys(
            e @ cloister_keyvault::KeyvaultError::Unseal { .. },
        )) => {
            bail!(
                "{e}\nThis binary is not the one keyvault's state was sealed to (an upgrade?). \
                 Stop the platform and run `cloister keyvault migrate --data-dir {}` with the \
                 recovery key printed at initialisation.",
                args.data_dir.display()
            )
        }
        Err(e) if e.code() == cloister_types::ErrorCode::RollbackDetected => {
            bail!(
                "refusing to start: {e}\nTo accept a database restored on purpose, stop the \
                     platform and run `cloister keyvault restore --data-dir {} --from <backup>` \
                     with an admin identity.",
                args.data_dir.display()
            )
        }
        Err(e) => return Err(e).context("cannot open keyvault's state"),
    };
    match opened {
        cloister_keyvault::Opened::Created(recovery) => {
            show_recovery_key(&recovery.reveal(), args.recovery_key_file.as_deref())?
        }
        cloister_keyvault::Opened::Unsealed => {
            tracing::info!(
                "unsealed keyvault's root key (measurement {})",
                hex::encode(m[0])
            )
        }
    }
    let vault = Arc::new(vault);
    let attester: Arc<dyn cloister_attest::attester::Attester> = Arc::new(
        cloister_attest::sim::SimAttester::new(platform.clone(), "keyvault", m[0]),
    );
    // The executor policy is a registry entry: this binary's executor measurement is only the
    // bootstrap value, stored at first start; afterwards only an admin-signed change moves it.
    let executor_policy = vault
        .authority()
        .load_executor_policy(&tee::sim_policy_yaml(&m[1..]))
        .await
        .context("cannot load keyvault's executor policy")?;
    let allowed = vault.authority().executor_measurements();
    if !allowed.contains(&hex::encode(m[1])) {
        tracing::warn!(
            this_build = %hex::encode(m[1]),
            "the executor policy does not list this build's executor: an admin updates it with \
             `cloister keyvault policy set`"
        );
    }
    tracing::warn!(
        executor_measurements = ?allowed,
        "releasing secrets to executors with these measurements only (tee: sim, no hardware protection)"
    );
    let mut cfg = cloister_channel::ChannelConfig::new(
        "keyvault",
        attester.clone(),
        tee::verifiers(&platform)?,
    )
    .accept_peer_shared("executor", executor_policy);
    cfg.max_attestation_age = std::time::Duration::from_secs(tee::MAX_EVIDENCE_AGE_SECS / 2);
    let bundle = Arc::new(cloister_keyvault::bundle::BundleSource::new(
        attester,
        vault.clone(),
        platform.fingerprint_hex(),
    ));
    tracing::info!(
        rpc = %rpc.local_addr()?,
        channel = %channel.local_addr()?,
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
        stop_signal(),
    )
    .await?;
    tracing::info!("keyvault stopped");
    Ok(ExitCode::SUCCESS)
}

/// Hands the recovery key to the operator without it ever reaching a log: into the 0600 file
/// they named, or on an interactive terminal.
fn show_recovery_key(key: &str, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    if let Some(path) = file {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create {} for the recovery key", path.display()))?;
        f.write_all(key.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write the recovery key to {}", path.display()))?;
        tracing::warn!(
            file = %path.display(),
            "keyvault initialised; the recovery key was written to this 0600 file: move it offline"
        );
        return Ok(());
    }
    print_recovery_key(key);
    Ok(())
}

fn print_recovery_key(key: &str) {
    eprintln!();
    eprintln!("  ┌─ keyvault initialised ─────────────────────────────────────────────────");
    eprintln!("  │ Recovery key (shown ONCE, never stored by Cloister; keep it offline):");
    eprintln!("  │   {key}");
    eprintln!("  │ It is the only way to move secrets to a new cloister build:");
    eprintln!("  │   cloister keyvault migrate --data-dir <dir> --recovery-key-file <file>");
    eprintln!("  └────────────────────────────────────────────────────────────────────────");
    eprintln!();
}
