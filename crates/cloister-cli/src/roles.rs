//! The gateway and executor processes (started by `serve`, or separately in production).

use std::os::fd::FromRawFd;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use cloister_executor::ExecutorConfig;
use cloister_executor::secrets::NoSecretService;
use cloister_gateway::AppState;
use cloister_gateway::bootstrap::{AdminToken, ensure_admin_token};
use cloister_gateway::executor::Executor;
use cloister_store::SqliteStore;
use cloister_types::ServerLimits;
use tokio::net::TcpListener;

use crate::cli::{ExecutorArgs, GatewayArgs, RoleArgs};

/// Environment variable carrying the gateway↔executor shared token (removed at start).
pub const INTERNAL_TOKEN_ENV: &str = "CLOISTER_INTERNAL_TOKEN";

/// File name of the development admin token inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// File name of the SQLite database inside the data directory.
pub const DATABASE_FILE: &str = "cloister.db";

async fn listener(role: &RoleArgs) -> anyhow::Result<TcpListener> {
    match (role.listen, role.listen_fd) {
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

fn internal_token(token: Option<String>) -> anyhow::Result<String> {
    match token {
        Some(t) if t.len() >= 32 => Ok(t),
        Some(_) => bail!("{INTERNAL_TOKEN_ENV} must be at least 32 characters"),
        None => bail!("{INTERNAL_TOKEN_ENV} must hold the token shared by gateway and executor"),
    }
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
pub async fn gateway(args: GatewayArgs, token: Option<String>) -> anyhow::Result<ExitCode> {
    let token = internal_token(token)?;
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
    let executor = Executor::connect_lazy(&args.executor_url, &token)?;
    let state = AppState::new(Arc::new(store), executor, ServerLimits::default());
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    cloister_gateway::serve(listener, state, stop_signal()).await?;
    tracing::info!("gateway stopped");
    Ok(ExitCode::SUCCESS)
}

/// Runs the executor role.
pub async fn executor(args: ExecutorArgs, token: Option<String>) -> anyhow::Result<ExitCode> {
    let token = internal_token(token)?;
    let listener = listener(&args.role).await?;
    let exe = std::env::current_exe().context("cannot locate the cloister binary for workers")?;
    let sup = cloister_executor::pool::Supervisor::new(
        ExecutorConfig::new(exe),
        Arc::new(NoSecretService),
    );
    tracing::info!(addr = %listener.local_addr()?, tee = "sim", "executor listening (simulated TEE: not confidential)");
    cloister_executor::service::serve(listener, sup, &token, stop_signal()).await?;
    tracing::info!("executor stopped");
    Ok(ExitCode::SUCCESS)
}
