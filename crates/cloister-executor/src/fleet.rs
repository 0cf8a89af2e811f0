//! The fleet (invocation) keys this executor holds, fetched from keyvault over the attested
//! channel. Each is checked on arrival: the private key must yield the stated public key,
//! and the id must be that key's. Sealed invocations are opened with them
//! ([`crate::sealed`]).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cloister_crypto::{HpkeKeyPair, SecretKey32};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

pub use cloister_types::fleet::ROTATION_SECS;

/// One fleet key pair and its validity.
pub struct FleetKeyPair {
    /// First 8 bytes of the SHA-256 of the public key.
    pub key_id: [u8; 8],
    /// Rotation epoch.
    pub epoch: u64,
    /// The key pair (its private half zeroized on drop).
    pub pair: HpkeKeyPair,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub not_after: u64,
}

impl std::fmt::Debug for FleetKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetKeyPair")
            .field("key_id", &hex::encode(self.key_id))
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Why keyvault's fleet keys were not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// A key's fields do not fit together.
    #[error("fleet key of epoch {epoch} is inconsistent: {why}")]
    Inconsistent {
        /// Its epoch.
        epoch: u64,
        /// What does not fit.
        why: &'static str,
    },
}

impl FleetKeyPair {
    /// Checks and takes one key from keyvault's reply (the caller zeroizes the reply).
    pub fn from_wire(k: &cloister_rpc::keyvault::FleetSecret) -> Result<Self, FleetError> {
        let bad = |why| FleetError::Inconsistent {
            epoch: k.epoch,
            why,
        };
        let sk: [u8; 32] = k
            .private_key
            .as_slice()
            .try_into()
            .map_err(|_| bad("private key is not 32 bytes"))?;
        let pair = HpkeKeyPair::from_private(SecretKey32::from_array(sk))
            .map_err(|_| bad("private key rejected"))?;
        if pair.public().0.as_slice() != k.public_key.as_slice() {
            return Err(bad("private key does not yield the public key"));
        }
        let digest = Sha256::digest(pair.public().0);
        if k.key_id.as_slice() != &digest[..8] {
            return Err(bad("key id is not the public key's"));
        }
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&digest[..8]);
        if k.not_before >= k.not_after {
            return Err(bad("empty validity"));
        }
        Ok(Self {
            key_id,
            epoch: k.epoch,
            pair,
            not_before: k.not_before,
            not_after: k.not_after,
        })
    }
}

/// The fleet keys this executor holds, shared by the refresh loop and the RPC service.
///
/// The set is replaced whole on each refresh (keys keyvault no longer releases are dropped)
/// and cleared when keyvault refuses this executor. A request under a key id it does not
/// hold asks for an early refresh and waits for it briefly: after an admin's policy change,
/// clients see the new keys in keyvault's bundle before this executor's next refresh.
pub struct FleetKeyring {
    held: RwLock<Vec<Arc<FleetKeyPair>>>,
    wanted: Notify,
    changed: watch::Sender<u64>,
    /// When a request last asked for an early refresh: anyone may send requests under random
    /// key ids, and each refresh is a keyvault round trip (and an audit entry when the keys
    /// changed), so they are asked for at most every [`EARLY_REFRESH_GAP`].
    last_wanted: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Shortest gap between early refreshes requests ask for.
pub const EARLY_REFRESH_GAP: Duration = Duration::from_secs(2);

impl Default for FleetKeyring {
    fn default() -> Self {
        Self {
            held: RwLock::new(Vec::new()),
            wanted: Notify::new(),
            changed: watch::Sender::new(0),
            last_wanted: std::sync::Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for FleetKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetKeyring")
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl FleetKeyring {
    /// Replaces the held keys with `keys`.
    pub fn replace(&self, keys: Vec<FleetKeyPair>) {
        *self.held.write().unwrap_or_else(|p| p.into_inner()) =
            keys.into_iter().map(Arc::new).collect();
        self.changed.send_modify(|v| *v += 1);
    }

    /// Drops every key (keyvault refused this executor).
    pub fn clear(&self) {
        self.replace(Vec::new());
    }

    /// `key id (hex) @ epoch` of each held key.
    pub fn key_ids(&self) -> Vec<String> {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|k| format!("{}@{}", hex::encode(k.key_id), k.epoch))
            .collect()
    }

    fn find(&self, key_id: &[u8; 8]) -> Option<Arc<FleetKeyPair>> {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|k| &k.key_id == key_id)
            .cloned()
    }

    /// The key `key_id`; when it is not held, asks the refresh loop for keyvault's current
    /// keys (at most once per [`EARLY_REFRESH_GAP`]) and waits up to `wait` for them. A
    /// request arriving while a refresh is in flight or not yet allowed waits for new keys
    /// too, so a request under a bogus key id cannot make a genuine one fail.
    pub async fn get(&self, key_id: &[u8; 8], wait: Duration) -> Option<Arc<FleetKeyPair>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut changed = self.changed.subscribe();
            if let Some(k) = self.find(key_id) {
                return Some(k);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            let next_allowed = {
                let mut last = self.last_wanted.lock().unwrap_or_else(|p| p.into_inner());
                match *last {
                    Some(t) if t.elapsed() < EARLY_REFRESH_GAP => {
                        Some(tokio::time::Instant::from_std(t + EARLY_REFRESH_GAP))
                    }
                    _ => {
                        *last = Some(std::time::Instant::now());
                        None
                    }
                }
            };
            let until = match next_allowed {
                None => {
                    self.wanted.notify_one();
                    deadline
                }
                Some(at) => at.min(deadline),
            };
            // Woken by new keys, or when another refresh may be asked for.
            let _ = tokio::time::timeout_at(until, changed.changed()).await;
        }
    }

    /// Resolves when a request asked for an early refresh.
    pub async fn refresh_wanted(&self) {
        self.wanted.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(seed: u8) -> cloister_rpc::keyvault::FleetSecret {
        let pair = HpkeKeyPair::derive(&[seed; 32]).unwrap();
        cloister_rpc::keyvault::FleetSecret {
            key_id: Sha256::digest(pair.public().0)[..8].to_vec(),
            epoch: 3,
            public_key: pair.public().0.to_vec(),
            private_key: pair.private().expose().to_vec(),
            not_before: 10,
            not_after: 20,
        }
    }

    #[test]
    fn a_key_whose_parts_do_not_fit_is_refused() {
        assert!(FleetKeyPair::from_wire(&wire(1)).is_ok());
        let other = wire(2);
        let mut mixed = wire(1);
        mixed.private_key = other.private_key.clone();
        let mut relabelled = wire(1);
        relabelled.key_id = other.key_id.clone();
        let mut short = wire(1);
        short.private_key.pop();
        let mut empty = wire(1);
        empty.not_after = empty.not_before;
        for bad in [mixed, relabelled, short, empty] {
            assert!(FleetKeyPair::from_wire(&bad).is_err());
        }
        let ok = FleetKeyPair::from_wire(&wire(1)).unwrap();
        assert!(!format!("{ok:?}").contains(&hex::encode(wire(1).private_key)));
    }

    #[tokio::test]
    async fn an_unknown_key_id_asks_for_a_refresh_and_waits_for_it() {
        let ring = Arc::new(FleetKeyring::default());
        ring.replace(vec![FleetKeyPair::from_wire(&wire(1)).unwrap()]);
        let one: [u8; 8] = wire(1).key_id.try_into().unwrap();
        let two: [u8; 8] = wire(2).key_id.try_into().unwrap();
        assert!(ring.get(&one, Duration::ZERO).await.is_some());
        // A refresher that answers the request with key 2 (replacing key 1).
        let r = ring.clone();
        let refresher = tokio::spawn(async move {
            r.refresh_wanted().await;
            r.replace(vec![FleetKeyPair::from_wire(&wire(2)).unwrap()]);
        });
        let got = ring.get(&two, Duration::from_secs(10)).await;
        assert_eq!(got.map(|k| k.key_id), Some(two));
        refresher.await.unwrap();
        // Another unknown id right after does not ask again (no refresher is listening): it
        // waits for new keys only as long as it may.
        let t = std::time::Instant::now();
        let watcher = {
            let r = ring.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(500), r.refresh_wanted())
                    .await
                    .is_ok()
            })
        };
        assert!(
            ring.get(&one, Duration::from_millis(300)).await.is_none(),
            "replaced whole"
        );
        assert!(!watcher.await.unwrap(), "no second early refresh asked");
        assert!(t.elapsed() < Duration::from_secs(2));
        // Within the gap, a request waits for the keys another request's refresh brings.
        let r = ring.clone();
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            r.replace(vec![
                FleetKeyPair::from_wire(&wire(1)).unwrap(),
                FleetKeyPair::from_wire(&wire(2)).unwrap(),
            ]);
        });
        assert!(ring.get(&one, Duration::from_secs(5)).await.is_some());
        late.await.unwrap();
        ring.clear();
        assert!(ring.key_ids().is_empty());
    }
}
