//! Messages on an attested channel: a 4-byte big-endian length, then a CBOR-encoded [`Msg`].

use crate::error::ChannelError;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest message accepted (evidence with certificate chains is a few KiB; secrets less).
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// One message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Evidence of the sender, bound to this connection and the sender's role.
    Attest {
        /// The sender's role.
        role: String,
        /// The evidence bytes.
        #[serde(with = "serde_bytes")]
        evidence: Vec<u8>,
    },
    /// The sender verified the peer's evidence and accepts the channel.
    Accepted,
    /// Application payload.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Application payload of exchange `id`: a request and its reply carry the same id, so
    /// many exchanges can be in flight on one channel and replies may come in any order.
    Tagged {
        /// The exchange, chosen by the side that sent the request.
        id: u64,
        /// The payload.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The sender refuses to continue; it closes after this.
    Error {
        /// Stable reason.
        code: String,
        /// Details (never secret).
        message: String,
    },
}

/// Writes one message and flushes.
pub async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &Msg) -> Result<(), ChannelError> {
    // Payloads carry secret values and keys: the encoded copies are wiped when dropped.
    let mut body = zeroize::Zeroizing::new(Vec::new());
    ciborium::into_writer(msg, &mut *body)
        .map_err(|e| ChannelError::Protocol(format!("cannot encode message: {e}")))?;
    if body.len() > MAX_MESSAGE {
        return Err(ChannelError::Protocol(format!(
            "message of {} bytes exceeds the {MAX_MESSAGE}-byte limit",
            body.len()
        )));
    }
    let len = u32::try_from(body.len())
        .map_err(|_| ChannelError::Protocol("message too large".into()))?;
    let mut framed = zeroize::Zeroizing::new(Vec::with_capacity(4 + body.len()));
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&body);
    w.write_all(&framed).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one message; a clean end of stream before it is [`ChannelError::Closed`].
pub async fn read_msg<R: AsyncRead + Unpin>(r: &mut R) -> Result<Msg, ChannelError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ChannelError::Closed);
        }
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(ChannelError::Protocol(format!(
            "peer announced a {len}-byte message (limit {MAX_MESSAGE})"
        )));
    }
    let mut body = zeroize::Zeroizing::new(vec![0u8; len]);
    r.read_exact(&mut body).await?;
    ciborium::from_reader(body.as_slice())
        .map_err(|e| ChannelError::Protocol(format!("undecodable message: {e}")))
}

/// Bytes read from the peer and not yet taken as whole messages. Reading into it is
/// cancel-safe: bytes a read returned stay here even if the reading future is dropped, so a
/// task may wait for the next message and for something else at once (`tokio::select!`).
/// Consumed bytes are wiped, and so is the whole buffer when it grows or is dropped.
pub struct ReadBuf {
    buf: zeroize::Zeroizing<Vec<u8>>,
    start: usize,
}

impl Default for ReadBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadBuf {
    /// Room for a few signing exchanges before the buffer grows.
    const INITIAL: usize = 16 * 1024;

    /// An empty buffer.
    pub fn new() -> Self {
        Self {
            buf: zeroize::Zeroizing::new(Vec::with_capacity(Self::INITIAL)),
            start: 0,
        }
    }

    /// The next whole message already read, if there is one.
    pub fn take_msg(&mut self) -> Result<Option<Msg>, ChannelError> {
        let avail = &self.buf[self.start..];
        let Some(head) = avail.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > MAX_MESSAGE {
            return Err(ChannelError::Protocol(format!(
                "peer announced a {len}-byte message (limit {MAX_MESSAGE})"
            )));
        }
        let Some(body) = avail.get(4..4 + len) else {
            return Ok(None);
        };
        let msg = ciborium::from_reader(body)
            .map_err(|e| ChannelError::Protocol(format!("undecodable message: {e}")));
        let end = self.start + 4 + len;
        zeroize::Zeroize::zeroize(&mut self.buf[self.start..end]);
        self.start = end;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        msg.map(Some)
    }

    /// Reads what the peer sent next (at least one byte); the end of the stream is
    /// [`ChannelError::Closed`] between messages and an I/O error inside one.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<(), ChannelError> {
        self.make_room();
        // `read_buf` is cancel-safe, and with spare capacity ensured the vector does not
        // reallocate (which would leave an unwiped copy behind).
        let n = match r.read_buf(&mut *self.buf).await {
            Ok(n) => n,
            // TLS reports a peer gone without close_notify as an unexpected end: between
            // messages that is a close like any other.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        if n > 0 {
            return Ok(());
        }
        if self.start == self.buf.len() {
            Err(ChannelError::Closed)
        } else {
            Err(ChannelError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the peer closed the channel inside a message",
            )))
        }
    }

    /// Moves unread bytes to the front, or into a larger buffer, so that some capacity is
    /// spare (at least what the message being read still needs).
    fn make_room(&mut self) {
        if self.start > 0 {
            let unread = self.buf.len() - self.start;
            self.buf.copy_within(self.start.., 0);
            zeroize::Zeroize::zeroize(&mut self.buf[unread..]);
            self.buf.truncate(unread);
            self.start = 0;
        }
        let needed = match self.buf.first_chunk::<4>() {
            Some(head) => (4 + u32::from_be_bytes(*head) as usize).min(4 + MAX_MESSAGE),
            None => 4,
        };
        let want = needed.max(self.buf.len() + 1);
        if self.buf.capacity() < want {
            let mut bigger =
                zeroize::Zeroizing::new(Vec::with_capacity(want.max(self.buf.capacity() * 2)));
            bigger.extend_from_slice(&self.buf);
            // The old allocation is wiped as it drops.
            self.buf = bigger;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let msg = Msg::Attest {
            role: "executor".into(),
            evidence: vec![1, 2, 3],
        };
        write_msg(&mut a, &msg).await.expect("write");
        assert_eq!(read_msg(&mut b).await.expect("read"), msg);
        a.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
        assert!(matches!(
            read_msg(&mut b).await,
            Err(ChannelError::Protocol(_))
        ));
        drop(a);
        assert!(matches!(read_msg(&mut b).await, Err(ChannelError::Closed)));
    }

    /// Messages split across reads, several in one read, a large one that grows the buffer,
    /// and reads abandoned half-way (a `select!` that chose another branch) lose nothing.
    #[tokio::test]
    async fn read_buf_reassembles_messages_and_survives_cancelled_reads() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let msgs = [
            Msg::Tagged {
                id: 1,
                data: vec![7; 10],
            },
            Msg::Data(vec![9; 100_000]),
            Msg::Tagged {
                id: u64::MAX,
                data: Vec::new(),
            },
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            write_msg(&mut wire, m).await.expect("encode");
        }
        let mut buf = ReadBuf::new();
        let mut got = Vec::new();
        // Feed the bytes a few at a time, abandoning a pending read before each chunk.
        let mut abandoned = 0;
        for chunk in wire.chunks(4093) {
            // Most of these find nothing to read and are dropped while waiting.
            let early =
                tokio::time::timeout(std::time::Duration::from_millis(1), buf.fill(&mut b)).await;
            abandoned += usize::from(early.is_err());
            a.write_all(chunk).await.expect("write");
            buf.fill(&mut b).await.expect("fill");
            while let Some(m) = buf.take_msg().expect("decode") {
                got.push(m);
            }
        }
        while got.len() < msgs.len() {
            buf.fill(&mut b).await.expect("fill");
            while let Some(m) = buf.take_msg().expect("decode") {
                got.push(m);
            }
        }
        assert!(
            abandoned > 10,
            "reads were abandoned half-way ({abandoned})"
        );
        assert_eq!(got, msgs);
        // A message announced over the limit is refused before it is read.
        a.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
        buf.fill(&mut b).await.expect("fill");
        assert!(matches!(buf.take_msg(), Err(ChannelError::Protocol(_))));
    }

    #[tokio::test]
    async fn read_buf_tells_a_clean_close_from_a_truncated_message() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mut buf = ReadBuf::new();
        a.write_all(&[0, 0, 0, 9, 1]).await.expect("write");
        drop(a);
        buf.fill(&mut b).await.expect("fill");
        assert!(buf.take_msg().expect("partial").is_none());
        assert!(matches!(buf.fill(&mut b).await, Err(ChannelError::Io(_))));
        let (a, mut b) = tokio::io::duplex(1024);
        drop(a);
        assert!(matches!(
            ReadBuf::new().fill(&mut b).await,
            Err(ChannelError::Closed)
        ));
    }
}
