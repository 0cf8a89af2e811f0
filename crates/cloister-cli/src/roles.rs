//! The gateway process (untrusted; started by `serve`, or separately in production). The
//! trusted roles are their own executables (`cloister-keyvaultd`, `cloister-executord`).

use std::process::ExitCode;

use anyhow::{Context, bail};
use cloister_gateway::AppState;
use cloister_gateway::bootstrap::{AdminToken, ensure_admin_token};
use cloister_gateway::executor::Executor;
use cloister_types::ServerLimits;
use tokio::net::TcpListener;

use crate::cli::{GatewayArgs, RoleArgs};

/// The credential holding a role's database URL when `serve` passes one (never on the
/// command line: it may hold a password).
pub const DATABASE_CREDENTIAL: &str = "database";

/// File name of the development admin token inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

async fn listener(role: &RoleArgs) -> anyhow::Result<TcpListener> {
    cloister_role::listen::listen_on(role.listen, role.listen_fd).await
}

fn credentials(role: &RoleArgs) -> anyhow::Result<cloister_role::credentials::Credentials> {
    cloister_role::credentials::load(role.credentials_fd, role.credentials_file.as_deref())
}

/// Runs the gateway role.
pub async fn gateway(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let creds = credentials(&args.role)?;
    let listener = listener(&args.role).await?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let location = cloister_role::files::role_database(
        &args.data_dir,
        cloister_role::files::GATEWAY_DATABASE_FILE,
        args.database_url
            .as_ref()
            .map(cloister_db::DatabaseUrl::expose)
            .or(creds.optional(DATABASE_CREDENTIAL)),
    )?;
    let store = cloister_store::open(&location)
        .await
        .with_context(|| format!("cannot open the gateway's store at {location}"))?;
    tracing::info!(store = %location, "gateway store");
    if args.bootstrap_admin_token {
        let path = args.data_dir.join(ADMIN_TOKEN_FILE);
        match ensure_admin_token(store.as_ref(), &path).await? {
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
    let mut edge = args.edge.config();
    edge.max_connections = cloister_role::harden::room_for_connections(edge.max_connections);
    let state = AppState::new(
        store,
        executor,
        keyvault,
        ServerLimits::default(),
        edge.rate,
    );
    state.epochs.follow(cloister_gateway::epochs::DEFAULT_POLL);
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    cloister_gateway::serve(listener, state, edge, cloister_role::listen::stop_signal()).await?;
    tracing::info!("gateway stopped");
    Ok(ExitCode::SUCCESS)
}
