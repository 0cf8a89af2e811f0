//! Why a channel could not be established or was closed.

use thiserror::Error;

/// A channel failure, with a stable [`ChannelError::code`].
#[derive(Debug, Error)]
pub enum ChannelError {
    /// Transport failure (connect, read, write).
    #[error("channel I/O: {0}")]
    Io(#[from] std::io::Error),
    /// TLS setup or handshake failure.
    #[error("TLS: {0}")]
    Tls(String),
    /// The peer did not complete a step in time (e.g. never sent evidence).
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The peer broke the message protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer's evidence was refused by this side.
    #[error("peer attestation refused [{code}]: {message}")]
    Attestation {
        /// Stable reason (`bad_signature`, `wrong_binding`, `policy_rejected`, ...).
        code: String,
        /// Details.
        message: String,
    },
    /// The peer refused this side (it sent an error message and closed).
    #[error("peer refused the channel [{code}]: {message}")]
    Refused {
        /// The peer's stable reason.
        code: String,
        /// The peer's message.
        message: String,
    },
    /// The peer's last verified evidence is older than the maximum attestation age.
    #[error("peer attestation is stale ({age_secs} s old, max {max_secs} s)")]
    Stale {
        /// Age of the last verified evidence.
        age_secs: u64,
        /// Configured maximum.
        max_secs: u64,
    },
    /// The peer closed the connection.
    #[error("channel closed by the peer")]
    Closed,
}

impl ChannelError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            Self::Io(_) => "channel_io",
            Self::Tls(_) => "channel_tls",
            Self::Timeout(_) => "channel_timeout",
            Self::Protocol(_) => "channel_protocol",
            Self::Attestation { code, .. } => code,
            Self::Refused { code, .. } => code,
            Self::Stale { .. } => "attestation_stale",
            Self::Closed => "channel_closed",
        }
    }

    /// Shorthand for [`ChannelError::Attestation`].
    pub(crate) fn attestation(code: &str, message: impl Into<String>) -> Self {
        Self::Attestation {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}
