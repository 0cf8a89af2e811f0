//! Many exchanges in flight on one attested channel: a task owns the stream, tags each
//! request with an id of its own and hands every reply to the caller waiting for that id.
//!
//! Callers may give up (a deadline, a client gone) without harming the channel: their reply
//! is dropped when it comes. A failed channel fails every exchange in flight and every later
//! one; [`Multiplexed::is_closed`] tells the owner to attest a new one.
//!
//! The task writes a request and reads replies in turn, never both at once. That cannot
//! deadlock as long as the peer reads requests while its replies wait to be written, or
//! the replies in flight ([`Multiplexed::spawn`]'s bound times their size) fit in the
//! socket buffers: keep the bound and the replies small (signatures, not secret bundles).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};
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
    /// their replies (later calls queue). Must be called within a tokio runtime.
    pub fn spawn<T: TlsConn + 'static>(stream: AttestedStream<T>, in_flight: usize) -> Self {
        let (calls, rx) = mpsc::channel(in_flight.max(1));
        let closed = Arc::new(AtomicBool::new(false));
        let peer = stream.peer().clone();
        tokio::spawn(drive(stream, rx, in_flight.max(1), closed.clone()));
        Self {
            calls,
            closed,
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

    /// Marks the channel closed (its owner no longer trusts it): [`Self::is_closed`] turns
    /// true, and the task ends once the last handle is dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
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

/// Why the exchanges in flight failed, for each of them (errors are not `Clone`).
fn failure(e: &ChannelError) -> ChannelError {
    match e {
        ChannelError::Closed => ChannelError::Closed,
        other => ChannelError::Protocol(format!("the channel failed: {other}")),
    }
}

async fn drive<T: TlsConn>(
    mut stream: AttestedStream<T>,
    mut calls: mpsc::Receiver<Call>,
    in_flight: usize,
    closed: Arc<AtomicBool>,
) {
    let mut waiting: HashMap<u64, oneshot::Sender<Reply>> = HashMap::new();
    let mut next_id: u64 = 0;
    let error = loop {
        tokio::select! {
            biased;
            incoming = stream.recv_any() => match incoming {
                Ok(Incoming { id: Some(id), data }) => match waiting.remove(&id) {
                    // A caller that gave up has dropped its receiver: the reply goes nowhere.
                    Some(tx) => {
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
            call = calls.recv(), if waiting.len() < in_flight => {
                let Some((request, tx)) = call else {
                    // Every handle is gone: close the channel.
                    closed.store(true, Ordering::Release);
                    return;
                };
                if tx.is_closed() {
                    continue;
                }
                next_id = next_id.wrapping_add(1);
                waiting.insert(next_id, tx);
                if let Err(e) = stream.send_tagged(next_id, &request).await {
                    break e;
                }
            }
        }
    };
    closed.store(true, Ordering::Release);
    tracing::info!(error = %error, "multiplexed channel closed");
    for (_, tx) in waiting.drain() {
        let _ = tx.send(Err(failure(&error)));
    }
    calls.close();
    while let Some((_, tx)) = calls.recv().await {
        let _ = tx.send(Err(failure(&error)));
    }
}
