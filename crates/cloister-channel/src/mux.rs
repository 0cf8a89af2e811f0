//! Many exchanges in flight on one attested channel: a task owns the stream, tags each
//! request with an id of its own and hands every reply to the caller waiting for that id.
//!
//! Callers may give up (a deadline, a client gone) without harming the channel: their reply
//! is dropped when it comes. A failed channel fails every exchange in flight and every later
//! one; [`Multiplexed::is_closed`] tells the owner to attest a new one. So does a peer that
//! leaves an exchange unanswered for longer than the reply timeout.
//!
//! [`ChannelError::Closed`] from [`Multiplexed::call`] means the request was never sent (a
//! retry on a new channel cannot repeat it); an exchange in flight when the channel failed
//! gets [`ChannelError::Protocol`] (the peer may have acted on it).
//!
//! The task writes a request and reads replies in turn, never both at once. That cannot
//! deadlock as long as the peer reads requests while its replies wait to be written, or
//! the replies in flight ([`Multiplexed::spawn`]'s bound times their size) fit in the
//! socket buffers: keep the bound and the replies small (signatures, not secret bundles).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::error::ChannelError;
use crate::stream::{AttestedStream, Incoming, PeerInfo};
use crate::tls::TlsConn;

type Reply = Result<Vec<u8>, ChannelError>;
type Call = (Zeroizing<Vec<u8>>, oneshot::Sender<Reply>);

/// A handle on a channel driven by its own task; clones share the channel.
#[derive(Clone)]
pub struct Multiplexed {
    calls: mpsc::Sender<Call>,
    closed: Arc<AtomicBool>,
    stop: Arc<Notify>,
    peer: PeerInfo,
}

impl std::fmt::Debug for Multiplexed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multiplexed")
            .field("peer_role", &self.peer.role)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Multiplexed {
    /// Starts the task driving `stream`, with at most `in_flight` exchanges waiting for
    /// their replies (later calls queue); an exchange unanswered for `reply_timeout` fails the
    /// channel. Must be called within a tokio runtime.
    pub fn spawn<T: TlsConn + 'static>(
        stream: AttestedStream<T>,
        in_flight: usize,
        reply_timeout: Duration,
    ) -> Self {
        let (calls, rx) = mpsc::channel(in_flight.max(1));
        let closed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(Notify::new());
        let peer = stream.peer().clone();
        tokio::spawn(drive(
            stream,
            rx,
            Limits {
                in_flight: in_flight.max(1),
                reply_timeout,
            },
            closed.clone(),
            stop.clone(),
        ));
        Self {
            calls,
            closed,
            stop,
            peer,
        }
    }

    /// Sends `request` and waits for its reply. Dropping the future abandons the exchange
    /// only.
    pub async fn call(&self, request: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.calls
            .send((Zeroizing::new(request.to_vec()), tx))
            .await
            .map_err(|_| ChannelError::Closed)?;
        rx.await.map_err(|_| ChannelError::Closed)?
    }

    /// Closes the channel (its owner no longer trusts it): [`Self::is_closed`] turns true,
    /// and every exchange still waiting fails.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // The task fails every exchange still waiting and stops.
        self.stop.notify_one();
    }

    /// Whether the channel has failed or closed (every call now fails).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.calls.is_closed()
    }

    /// The peer as verified when the channel was established.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }
}

/// Why the exchanges in flight failed, for each of them (errors are not `Clone`). Never
/// [`ChannelError::Closed`]: the peer may have acted on them.
fn failure(e: &ChannelError) -> ChannelError {
    ChannelError::Protocol(format!(
        "the channel failed with this exchange in flight: {e}"
    ))
}

/// Bounds of the driving task.
struct Limits {
    in_flight: usize,
    reply_timeout: Duration,
}

async fn drive<T: TlsConn>(
    mut stream: AttestedStream<T>,
    mut calls: mpsc::Receiver<Call>,
    limits: Limits,
    closed: Arc<AtomicBool>,
    stop: Arc<Notify>,
) {
    // By id, which grows: the first entry is the oldest exchange.
    let mut waiting: BTreeMap<u64, (oneshot::Sender<Reply>, Instant)> = BTreeMap::new();
    let mut next_id: u64 = 0;
    let error = loop {
        let oldest = waiting
            .first_key_value()
            .map(|(_, (_, sent))| *sent + limits.reply_timeout);
        tokio::select! {
            biased;
            _ = stop.notified() => {
                break ChannelError::Protocol("closed by its owner".into());
            }
            incoming = stream.recv_any() => match incoming {
                Ok(Incoming { id: Some(id), data }) => match waiting.remove(&id) {
                    // A caller that gave up has dropped its receiver: the reply goes nowhere.
                    Some((tx, _)) => {
                        let _ = tx.send(Ok(data));
                    }
                    None => {
                        break ChannelError::Protocol(format!(
                            "the peer answered exchange {id}, which is not in flight"
                        ));
                    }
                },
                Ok(Incoming { id: None, .. }) => {
                    break ChannelError::Protocol("an untagged reply on a multiplexed channel".into());
                }
                Err(e) => break e,
            },
            _ = tokio::time::sleep_until(oldest.unwrap_or_else(Instant::now)), if oldest.is_some() => {
                break ChannelError::Timeout("a reply to the oldest exchange");
            }
            call = calls.recv(), if waiting.len() < limits.in_flight => {
                let Some((request, tx)) = call else {
                    // Every handle is gone: close the channel.
                    closed.store(true, Ordering::Release);
                    return;
                };
                if tx.is_closed() {
                    continue;
                }
                next_id = next_id.wrapping_add(1);
                waiting.insert(next_id, (tx, Instant::now()));
                if let Err(e) = stream.send_tagged(next_id, &request).await {
                    break e;
                }
            }
        }
    };
    closed.store(true, Ordering::Release);
    tracing::info!(error = %error, "multiplexed channel closed");
    for (_, (tx, _)) in std::mem::take(&mut waiting) {
        let _ = tx.send(Err(failure(&error)));
    }
    // Calls queued but never sent: `Closed`, so their owners may retry on a new channel.
    calls.close();
    while let Some((_, tx)) = calls.recv().await {
        let _ = tx.send(Err(ChannelError::Closed));
    }
}
