//! The keyvault process: the gateway-facing RPC server, the executor-facing attested channel
//! server and the checkpoint ticker, stopped together.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cloister_channel::{ChannelAcceptor, ChannelConfig, ChannelError};
use cloister_rpc::InternalAuth;
use cloister_rpc::keyvault::keyvault_server::KeyvaultServer;
use tokio::net::TcpListener;

use crate::bundle::BundleSource;
use crate::release::serve_channel;
use crate::service::KeyvaultService;
use crate::vault::Vault;

/// How often keyvault signs a checkpoint over new audit entries.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Why the keyvault servers stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The RPC server failed.
    #[error("keyvault RPC server: {0}")]
    Rpc(#[from] tonic::transport::Error),
    /// The attested channel server failed.
    #[error("keyvault channel server: {0}")]
    Channel(#[from] std::io::Error),
    /// The channel configuration was unusable.
    #[error("keyvault channel setup: {0}")]
    Setup(#[from] ChannelError),
}

/// Runs keyvault until `shutdown` resolves.
pub async fn serve(
    rpc: TcpListener,
    channel: TcpListener,
    vault: Arc<Vault>,
    bundle: Arc<BundleSource>,
    channel_config: ChannelConfig,
    internal_token: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let acceptor = Arc::new(ChannelAcceptor::new(Arc::new(channel_config))?);
    let channel_task = tokio::spawn(serve_channel(
        channel,
        acceptor,
        vault.clone(),
        stopped(stop_rx.clone()),
    ));

    let ticker = {
        let vault = vault.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
            loop {
                tick.tick().await;
                if let Err(e) = vault.authority().save_nonces().await {
                    tracing::warn!(error = %e, "cannot save used nonces");
                }
                if let Err(e) = vault.audit_suppressed().await {
                    tracing::warn!(error = %e, "cannot record the audit entries left out");
                }
                if let Err(e) = vault.checkpoint().await {
                    tracing::warn!(error = %e, "cannot sign an audit checkpoint");
                }
            }
        })
    };

    let auth = InternalAuth::new(internal_token);
    let server = KeyvaultServer::new(KeyvaultService::new(vault.clone(), bundle))
        .max_decoding_message_size(4 << 20);
    let svc = tonic::service::interceptor::InterceptedService::new(server, move |r| auth.check(r));
    let rpc_result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .serve_with_incoming_shutdown(
            svc,
            tonic::transport::server::TcpIncoming::from(rpc).with_nodelay(Some(true)),
            stopped(stop_rx),
        )
        .await;
    ticker.abort();
    if let Err(e) = vault.audit_suppressed().await {
        tracing::warn!(error = %e, "cannot record the audit entries left out");
    }
    if let Err(e) = vault.authority().save_nonces().await {
        tracing::warn!(error = %e, "cannot save used nonces");
    }
    if let Err(e) = vault.checkpoint().await {
        tracing::warn!(error = %e, "cannot sign the final audit checkpoint");
    }
    let channel_result = channel_task
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    rpc_result?;
    channel_result?;
    Ok(())
}
