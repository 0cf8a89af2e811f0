//! Listening sockets (bound here, or inherited from `serve`) and the stop signal.

use std::os::fd::FromRawFd;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

/// A listener on `addr`, or the listening socket inherited at descriptor `fd`.
pub async fn listen_on(
    addr: Option<std::net::SocketAddr>,
    fd: Option<i32>,
) -> anyhow::Result<TcpListener> {
    match (addr, fd) {
        (_, Some(fd)) => {
            if fd < 3 {
                bail!("a listening descriptor must be above 2, not {fd}");
            }
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

/// A multi-threaded runtime with `threads` workers (at least 1).
pub fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Default async worker threads of a role: half the CPUs, at least 1 (the rest is left to
/// function workers).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}
