//! The public listener: caps on connections (in total and per source address, IPv6 per /64),
//! a deadline for request headers (which is also the keep-alive idle limit), for request
//! bodies and for a client to read its responses, `TCP_NODELAY` on every connection, and a
//! graceful drain on shutdown.
//!
//! A connection over a cap is answered at once with a complete HTTP response (503
//! `unavailable` over the total cap, 429 `rate_limited` over the per-address cap, both with
//! `Retry-After`) and closed, so a client learns why instead of seeing a reset.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use bytes::Bytes;
use cloister_types::{ApiError, ErrorCode};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

use crate::ratelimit::RateConfig;
use crate::state::Shared;

/// How long shutdown waits for open requests to finish.
const DRAIN_TIME: Duration = Duration::from_secs(30);

/// Limits at the door of the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Request rate budgets.
    pub rate: RateConfig,
    /// Most open connections in total.
    pub max_connections: usize,
    /// Most open connections from one source address.
    pub max_connections_per_address: usize,
    /// Time a client has to send a request's headers (also how long an idle keep-alive
    /// connection stays open).
    pub header_timeout: Duration,
    /// Time a client has to send a request's whole body once its headers arrived; also the
    /// longest a response may wait for the client to read it.
    pub body_timeout: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            rate: RateConfig::default(),
            max_connections: 2048,
            max_connections_per_address: 256,
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// The error a body read reports when its deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyDeadlineElapsed(pub Duration);

/// A request body that fails once its deadline (counted from the first read) has passed.
struct DeadlineBody {
    inner: Incoming,
    limit: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let limit = self.limit;
        let sleep = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyDeadlineElapsed(limit)))));
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as Self::Error)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes must keep making progress: a write (or flush) that stays
/// blocked for longer than `limit`, because the client does not read its responses, fails the
/// connection instead of holding its place forever.
struct WriteDeadline {
    io: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WriteDeadline {
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => {
                let limit = self.limit;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading responses",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl tokio::io::AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// `TCP_USER_TIMEOUT`: unacknowledged data (or a zero window the client never opens) ends
/// the connection after `limit`, also after the gateway has closed it, so responses a client
/// never reads do not stay queued in the kernel beyond every cap.
fn set_user_timeout(tcp: &TcpStream, limit: Duration) {
    use std::os::fd::AsRawFd;
    let ms = libc::c_uint::try_from(limit.as_millis()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: setsockopt on a socket this function borrows, with a pointer to a local value.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not set TCP_USER_TIMEOUT");
    }
}

/// Open connections per source address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// A connection's place under both caps; given back on drop.
struct Place {
    _total: OwnedSemaphorePermit,
    per_address: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut map = self.per_address.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was not admitted.
enum Full {
    Total,
    Address,
}

fn admit(
    total: &Arc<Semaphore>,
    per_address: &Arc<PerAddress>,
    ip: IpAddr,
    max_per_address: usize,
) -> Result<Place, Full> {
    let permit = total.clone().try_acquire_owned().map_err(|_| Full::Total)?;
    let mut map = per_address.0.lock().unwrap_or_else(|p| p.into_inner());
    let n = map.entry(ip).or_insert(0);
    if *n >= max_per_address {
        return Err(Full::Address);
    }
    *n += 1;
    drop(map);
    Ok(Place {
        _total: permit,
        per_address: per_address.clone(),
        ip,
    })
}

/// At most this many refused connections are answered at once; beyond that they are closed
/// without an answer, so a flood of refused connections cannot use up descriptors.
static REFUSING: Semaphore = Semaphore::const_new(64);

/// Answers a connection over a cap with a complete response, then closes it.
async fn refuse(mut tcp: TcpStream, why: Full) {
    let Ok(_turn) = REFUSING.try_acquire() else {
        return;
    };
    let (status, error) = match why {
        Full::Total => (
            "503 Service Unavailable",
            ApiError::new(
                ErrorCode::Unavailable,
                "the gateway is at its connection limit; retry shortly",
            ),
        ),
        Full::Address => (
            "429 Too Many Requests",
            ApiError::new(
                ErrorCode::RateLimited,
                "too many open connections from this address; close some and retry",
            ),
        ),
    };
    let body = serde_json::to_vec(&error.to_body()).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_millis(250), async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(&body).await?;
        tcp.shutdown().await?;
        // Read what the client sent so closing does not reset the connection under it.
        let mut sink = [0u8; 4096];
        let mut seen = 0;
        while seen < 64 * 1024 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => seen += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Whether an accept error is about resources (retry after a pause) rather than the socket.
fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves the API on `listener` until `shutdown` resolves, then drains open requests.
pub async fn serve(
    listener: TcpListener,
    state: Shared,
    edge: EdgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = crate::router(state.clone());
    let graceful = GracefulShutdown::new();
    let total = Arc::new(Semaphore::new(edge.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let cleaner = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                state.rate.forget_idle();
            }
        })
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer): (TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if transient(&e) => {
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => {
                    cleaner.abort();
                    return Err(e);
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        set_user_timeout(&tcp, edge.body_timeout);
        let place = match admit(
            &total,
            &per_address,
            crate::ratelimit::address_key(peer.ip()),
            edge.max_connections_per_address,
        ) {
            Ok(p) => p,
            Err(why) => {
                state.metrics.connections_refused.inc();
                tokio::spawn(refuse(tcp, why));
                continue;
            }
        };
        let router = router.clone();
        let body_timeout = edge.body_timeout;
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let body = Body::new(
                DeadlineBody {
                    inner: body,
                    limit: body_timeout,
                    deadline: None,
                }
                .boxed(),
            );
            router.clone().oneshot(Request::from_parts(parts, body))
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(edge.header_timeout)
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(WriteDeadline {
                    io: tcp,
                    limit: edge.body_timeout,
                    stalled: None,
                }),
                service,
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _place = place;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    cleaner.abort();
    if tokio::time::timeout(DRAIN_TIME, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after {DRAIN_TIME:?}; stopping anyway");
    }
    Ok(())
}
