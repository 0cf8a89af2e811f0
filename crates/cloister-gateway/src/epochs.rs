//! Secrets epochs as keyvault reports them, cached so the invocation path asks nobody: a
//! background task follows keyvault's change feed, and a write this gateway relays pulls the
//! feed before it answers (its own next invocation sees the change). Other gateways see it
//! within one poll interval. The epoch is only a hint to executors (refetch cached grants);
//! they bound a stale one with their own cache lifetime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cloister_rpc::keyvault::EpochChangesRequest;
use cloister_store::StoreError;

use crate::keyvault::Keyvault;

/// Changes fetched per call.
const PAGE: u32 = 5_000;

/// How often the feed is polled by default.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Known {
    /// Highest change number applied.
    cursor: u64,
    by_namespace: HashMap<String, u64>,
}

/// The epochs of every namespace, following keyvault.
pub struct Epochs {
    keyvault: Option<Keyvault>,
    known: RwLock<Known>,
    synced: AtomicBool,
    pulling: tokio::sync::Mutex<()>,
}

impl Epochs {
    /// Follows `keyvault` (without one every epoch is 0).
    pub fn new(keyvault: Option<Keyvault>) -> Arc<Self> {
        Arc::new(Self {
            keyvault,
            known: RwLock::new(Known::default()),
            synced: AtomicBool::new(false),
            pulling: tokio::sync::Mutex::new(()),
        })
    }

    /// The epoch of a function's secrets namespace. Before the first successful pull it pulls
    /// (once); if keyvault cannot be reached it answers what it knows.
    pub async fn of_function(&self, function_id: &str) -> u64 {
        if self.keyvault.is_some()
            && !self.synced.load(Ordering::Acquire)
            && let Err(e) = self.pull().await
        {
            tracing::warn!(error = %e, "cannot read secrets epochs from keyvault");
        }
        let ns = cloister_types::namespace_of(function_id);
        self.known
            .read()
            .map(|k| k.by_namespace.get(&ns).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Applies every change keyvault has after the last one applied.
    pub async fn pull(&self) -> Result<(), StoreError> {
        let Some(kv) = &self.keyvault else {
            return Ok(());
        };
        let _one = self.pulling.lock().await;
        loop {
            let after = self.known.read().map(|k| k.cursor).unwrap_or(0);
            let r = kv
                .client()
                .epoch_changes(kv.request(EpochChangesRequest { after, limit: PAGE }))
                .await
                .map_err(|e| StoreError::Unavailable(e.message().to_owned()))?
                .into_inner();
            let n = r.changes.len();
            if let Ok(mut k) = self.known.write() {
                for c in r.changes {
                    k.cursor = k.cursor.max(c.changed);
                    let e = k.by_namespace.entry(c.namespace).or_insert(0);
                    *e = (*e).max(c.epoch);
                }
            }
            if n < PAGE as usize {
                break;
            }
        }
        self.synced.store(true, Ordering::Release);
        Ok(())
    }

    /// Pulls after a write this gateway relayed (logged, not failed: the write succeeded).
    pub async fn after_write(&self) {
        if let Err(e) = self.pull().await {
            tracing::warn!(error = %e, "cannot read secrets epochs after a write");
        }
    }

    /// Polls keyvault every `every` until the process ends.
    pub fn follow(self: &Arc<Self>, every: Duration) {
        if self.keyvault.is_none() {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { break };
                if let Err(e) = me.pull().await {
                    tracing::debug!(error = %e, "secrets epochs poll failed");
                }
            }
        });
    }
}
