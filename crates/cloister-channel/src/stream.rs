//! An established attested channel: message send/receive with key refresh and re-attestation.

use crate::binding::report_data;
use crate::config::ChannelConfig;
use crate::error::ChannelError;
use crate::frame::{Msg, ReadBuf, read_msg, write_msg};
use crate::tls::TlsConn;
use cloister_attest::claims::TeeDetail;
use cloister_attest::{Collateral, Verified};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who is on the other end, as proven by its last verified evidence.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The role the peer proved.
    pub role: String,
    /// Its verified evidence.
    pub verified: Arc<Verified>,
}

/// One message received: its payload, and the exchange it belongs to when the sender tagged
/// it (see [`AttestedStream::send_tagged`]).
#[derive(Debug)]
pub struct Incoming {
    /// The exchange id, for a tagged message.
    pub id: Option<u64>,
    /// The payload.
    pub data: Vec<u8>,
}

/// A channel whose peer has proven, with evidence bound to this TLS connection, that it
/// runs approved code in a TEE.
///
/// [`AttestedStream::recv`] and [`AttestedStream::recv_any`] are cancel-safe; sending is not:
/// a send dropped half-way leaves the channel unusable (every later call fails), since the
/// peer may have received part of a message.
pub struct AttestedStream<T: TlsConn> {
    io: T,
    rbuf: ReadBuf,
    broken: bool,
    config: Arc<ChannelConfig>,
    exporter: [u8; 32],
    peer: PeerInfo,
    peer_verified_at: Instant,
    own_attested_at: Instant,
    keys_refreshed_at: Instant,
    key_updates: u64,
    peer_attestations: u64,
}

impl<T: TlsConn> std::fmt::Debug for AttestedStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestedStream")
            .field("role", &self.config.role)
            .field("peer_role", &self.peer.role)
            .field("peer_tee", &self.peer.verified.claims().tee.label())
            .field("key_updates", &self.key_updates)
            .finish()
    }
}

impl<T: TlsConn> AttestedStream<T> {
    /// Exchanges evidence over a fresh TLS connection and verifies the peer's.
    pub async fn establish(mut io: T, config: Arc<ChannelConfig>) -> Result<Self, ChannelError> {
        let exporter = io.exporter()?;
        send_evidence(&mut io, &config, &exporter).await?;
        let (role, evidence) = match read_msg(&mut io).await? {
            Msg::Attest { role, evidence } => (role, evidence),
            Msg::Error { code, message } => return Err(ChannelError::Refused { code, message }),
            Msg::Data(_) | Msg::Tagged { .. } | Msg::Accepted => {
                let err = ChannelError::attestation(
                    "attestation_missing",
                    "peer sent data before attesting",
                );
                return Err(refuse(&mut io, err).await);
            }
        };
        let verified = match check_peer(&config, &exporter, &role, &evidence) {
            Ok(v) => v,
            Err(e) => return Err(refuse(&mut io, e).await),
        };
        // Both sides must accept before either uses the channel.
        write_msg(&mut io, &Msg::Accepted).await?;
        match read_msg(&mut io).await? {
            Msg::Accepted => {}
            Msg::Error { code, message } => return Err(ChannelError::Refused { code, message }),
            other => {
                let err = ChannelError::Protocol(format!(
                    "expected the peer's verdict, got {}",
                    kind(&other)
                ));
                return Err(refuse(&mut io, err).await);
            }
        }
        let now = Instant::now();
        tracing::debug!(role = %config.role, peer = %role, tee = %verified.claims().tee.label(), "attested channel established");
        Ok(Self {
            io,
            rbuf: ReadBuf::new(),
            broken: false,
            config,
            exporter,
            peer: PeerInfo {
                role,
                verified: Arc::new(verified),
            },
            peer_verified_at: now,
            own_attested_at: now,
            keys_refreshed_at: now,
            key_updates: 0,
            peer_attestations: 1,
        })
    }

    /// The peer as last verified.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// How many TLS key updates this side has initiated.
    pub fn key_updates(&self) -> u64 {
        self.key_updates
    }

    /// How many times the peer's evidence has been verified on this connection.
    pub fn peer_attestations(&self) -> u64 {
        self.peer_attestations
    }

    /// Sends one message, refreshing keys and re-attesting first when due.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        self.send_msg(Msg::Data(data.to_vec())).await
    }

    /// Sends one message of exchange `id`; the peer answers with [`Self::send_tagged`] and the
    /// same id, so several exchanges may be in flight at once.
    pub async fn send_tagged(&mut self, id: u64, data: &[u8]) -> Result<(), ChannelError> {
        self.send_msg(Msg::Tagged {
            id,
            data: data.to_vec(),
        })
        .await
    }

    async fn send_msg(&mut self, msg: Msg) -> Result<(), ChannelError> {
        self.usable()?;
        // Cleared only when the whole message is written (see the type's documentation).
        self.broken = true;
        if self.keys_refreshed_at.elapsed() >= self.config.key_rotation_interval {
            self.io.refresh_keys()?;
            self.keys_refreshed_at = Instant::now();
            self.key_updates += 1;
        }
        // Re-attest at half the maximum age so the peer never sees stale evidence.
        if self.own_attested_at.elapsed() >= self.config.max_attestation_age / 2 {
            send_evidence(&mut self.io, &self.config, &self.exporter).await?;
            self.own_attested_at = Instant::now();
        }
        let sent = write_msg(&mut self.io, &msg).await;
        if let Msg::Data(mut copy) | Msg::Tagged { data: mut copy, .. } = msg {
            zeroize::Zeroize::zeroize(&mut copy);
        }
        self.broken = sent.is_err();
        sent
    }

    fn usable(&self) -> Result<(), ChannelError> {
        if self.broken {
            return Err(ChannelError::Protocol(
                "the channel failed earlier (a message was cut off or refused)".into(),
            ));
        }
        Ok(())
    }

    /// Receives the next untagged message, verifying any fresh evidence the peer sends
    /// first. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Vec<u8>, ChannelError> {
        match self.recv_any().await? {
            Incoming { id: None, data } => Ok(data),
            Incoming { id: Some(_), .. } => {
                let err = ChannelError::Protocol("unexpected tagged message".into());
                Err(self.refuse(err).await)
            }
        }
    }

    /// Receives the next message, tagged or not, verifying any fresh evidence the peer sends
    /// first. Cancel-safe: a message is taken from the buffer only when it is returned.
    pub async fn recv_any(&mut self) -> Result<Incoming, ChannelError> {
        self.usable()?;
        loop {
            let msg = match self.rbuf.take_msg() {
                Ok(Some(msg)) => msg,
                Ok(None) => {
                    if let Err(e) = self.rbuf.fill(&mut self.io).await {
                        self.broken = true;
                        return Err(e);
                    }
                    continue;
                }
                Err(e) => return Err(self.refuse(e).await),
            };
            let (id, data) = match msg {
                Msg::Data(data) => (None, data),
                Msg::Tagged { id, data } => (Some(id), data),
                Msg::Attest { role, evidence } => {
                    if role != self.peer.role {
                        let err = ChannelError::attestation(
                            "role_changed",
                            format!("peer re-attested as `{role}`, not `{}`", self.peer.role),
                        );
                        return Err(self.refuse(err).await);
                    }
                    match check_peer(&self.config, &self.exporter, &role, &evidence) {
                        Ok(v) => {
                            self.peer.verified = Arc::new(v);
                            self.peer_verified_at = Instant::now();
                            self.peer_attestations += 1;
                        }
                        Err(e) => return Err(self.refuse(e).await),
                    }
                    continue;
                }
                Msg::Error { code, message } => {
                    self.broken = true;
                    return Err(ChannelError::Refused { code, message });
                }
                Msg::Accepted => {
                    let err =
                        ChannelError::Protocol("unexpected verdict after establishment".into());
                    return Err(self.refuse(err).await);
                }
            };
            let age = self.peer_verified_at.elapsed();
            if age > self.config.max_attestation_age {
                let err = ChannelError::Stale {
                    age_secs: age.as_secs(),
                    max_secs: self.config.max_attestation_age.as_secs(),
                };
                return Err(self.refuse(err).await);
            }
            return Ok(Incoming { id, data });
        }
    }

    /// Marks the channel failed, tells the peer why (best effort) and returns the error.
    async fn refuse(&mut self, err: ChannelError) -> ChannelError {
        self.broken = true;
        refuse(&mut self.io, err).await
    }

    /// Sends `request` and waits for the reply.
    pub async fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.send(request).await?;
        self.recv().await
    }

    /// Time since the peer's evidence was last verified.
    pub fn peer_attestation_age(&self) -> Duration {
        self.peer_verified_at.elapsed()
    }
}

async fn send_evidence<T: TlsConn>(
    io: &mut T,
    config: &ChannelConfig,
    exporter: &[u8; 32],
) -> Result<(), ChannelError> {
    let rd = report_data(exporter, &config.role);
    let produced = config
        .attester
        .attest(&rd)
        .map_err(|e| ChannelError::attestation("attester_failed", e.to_string()))?;
    write_msg(
        io,
        &Msg::Attest {
            role: config.role.clone(),
            evidence: produced.evidence,
        },
    )
    .await
}

fn kind(msg: &Msg) -> &'static str {
    match msg {
        Msg::Attest { .. } => "evidence",
        Msg::Accepted => "a verdict",
        Msg::Data(_) | Msg::Tagged { .. } => "data",
        Msg::Error { .. } => "an error",
    }
}

/// Tells the peer why it is refused (best effort) and returns the error.
async fn refuse<T: TlsConn>(io: &mut T, err: ChannelError) -> ChannelError {
    let msg = Msg::Error {
        code: err.code().to_owned(),
        message: err.to_string(),
    };
    let _ = write_msg(io, &msg).await;
    err
}

/// Verifies the peer's evidence: authentic, bound to this connection and role, and accepted
/// by the policy for that role.
fn check_peer(
    config: &ChannelConfig,
    exporter: &[u8; 32],
    role: &str,
    evidence: &[u8],
) -> Result<Verified, ChannelError> {
    let peer = config.peers.get(role).ok_or_else(|| {
        ChannelError::attestation(
            "role_not_accepted",
            format!("`{}` does not accept peers with role `{role}`", config.role),
        )
    })?;
    let now = cloister_attest::time_fmt::now();
    let verified = config
        .verifiers
        .for_evidence(evidence, None)
        .and_then(|v| v.verify(evidence, &Collateral::default(), now))
        .map_err(|e| ChannelError::attestation(e.code(), e.to_string()))?;
    let claims = verified.claims();
    let expected = report_data(exporter, role);
    if claims.report_data.as_ref().map(|h| h.0.as_slice()) != Some(expected.as_slice()) {
        return Err(ChannelError::attestation(
            "wrong_binding",
            "evidence is not bound to this connection (replayed, relayed or reflected)",
        ));
    }
    if let TeeDetail::Sim(sim) = &claims.detail
        && sim.role != role
    {
        return Err(ChannelError::attestation(
            "role_mismatch",
            format!(
                "evidence was produced for role `{}`, peer claims `{role}`",
                sim.role
            ),
        ));
    }
    let violations = peer.current().evaluate(&verified, now);
    if !violations.is_empty() {
        let list: Vec<String> = violations
            .iter()
            .map(|v| format!("{}: {}", v.rule, v.message))
            .collect();
        return Err(ChannelError::attestation(
            "policy_rejected",
            format!("{role} evidence rejected: {}", list.join("; ")),
        ));
    }
    Ok(verified)
}
