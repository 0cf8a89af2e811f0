//! Attested channels between Cloister's trusted roles (ARCHITECTURE §5).
//!
//! TLS 1.3 (rustls, ephemeral self-signed certificates) carries the bytes; trust comes from
//! attestation, not from certificates. Right after the handshake each side sends evidence
//! whose `report_data` is [`binding::report_data`] of this connection's TLS exporter value
//! and its own role, and checks the peer's evidence against the policy for the peer's role.
//! Evidence replayed from another connection, relayed by a man in the middle, or reflected
//! back to its sender carries the wrong binding and is refused.
//!
//! An established [`AttestedStream`] exchanges length-prefixed messages. It refreshes TLS
//! traffic keys every `key_rotation_interval` and re-attests in band before its evidence
//! is `max_attestation_age` old; a peer that stops re-attesting is cut off. A
//! [`Multiplexed`] channel carries many tagged exchanges at once.

pub mod binding;
pub mod config;
pub mod error;
pub mod frame;
pub mod mux;
pub mod stream;
pub mod tls;

pub use config::{ChannelConfig, PeerPolicy, SharedPolicy};
pub use error::ChannelError;
pub use mux::Multiplexed;
pub use stream::{AttestedStream, Incoming, PeerInfo};
pub use tls::{ChannelAcceptor, ChannelConnector, TlsConn};
