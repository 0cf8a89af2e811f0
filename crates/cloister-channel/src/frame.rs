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
}
