//! What one side of a channel proves and what it accepts from peers.

use cloister_attest::attester::Attester;
use cloister_attest::{Policy, VerifierSet};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A policy that may be replaced while channels run (keyvault's executor policy is a registry
/// entry changed by admin-signed requests); each handshake reads the current one.
pub type SharedPolicy = Arc<std::sync::RwLock<Policy>>;

/// The policy applied to a peer that claims a given role.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    /// Attestation policy (TEE types, measurement allowlist, `allow_simulated`, max age, ...).
    pub policy: SharedPolicy,
}

impl PeerPolicy {
    /// The current policy.
    pub fn current(&self) -> Policy {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Configuration of one side of attested channels.
#[derive(Clone)]
pub struct ChannelConfig {
    /// This side's role (`keyvault`, `executor`).
    pub role: String,
    /// Produces this side's evidence.
    pub attester: Arc<dyn Attester>,
    /// Verifies peers' evidence (must include the sim verifier if sim peers are allowed).
    pub verifiers: Arc<VerifierSet>,
    /// Peer roles this side talks to, each with its policy; any other role is refused.
    pub peers: BTreeMap<String, PeerPolicy>,
    /// How often TLS traffic keys are refreshed (`secure_channel.key_rotation_interval_sec`).
    pub key_rotation_interval: Duration,
    /// Maximum age of the peer's last verified evidence on a long-lived connection.
    pub max_attestation_age: Duration,
    /// Time allowed for the TLS handshake plus the evidence exchange.
    pub handshake_timeout: Duration,
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("role", &self.role)
            .field("tee", &self.attester.tee())
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .field("key_rotation_interval", &self.key_rotation_interval)
            .field("max_attestation_age", &self.max_attestation_age)
            .finish()
    }
}

impl ChannelConfig {
    /// A configuration with the default intervals: keys refreshed every 10 minutes,
    /// re-attestation every hour, 10 s to establish.
    pub fn new(role: &str, attester: Arc<dyn Attester>, verifiers: Arc<VerifierSet>) -> Self {
        Self {
            role: role.to_owned(),
            attester,
            verifiers,
            peers: BTreeMap::new(),
            key_rotation_interval: Duration::from_secs(600),
            max_attestation_age: Duration::from_secs(3600),
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// Accepts peers claiming `role` when their evidence satisfies `policy`.
    pub fn accept_peer(self, role: &str, policy: Policy) -> Self {
        self.accept_peer_shared(role, Arc::new(std::sync::RwLock::new(policy)))
    }

    /// Accepts peers claiming `role` under a policy that may change while running.
    pub fn accept_peer_shared(mut self, role: &str, policy: SharedPolicy) -> Self {
        self.peers.insert(role.to_owned(), PeerPolicy { policy });
        self
    }
}
