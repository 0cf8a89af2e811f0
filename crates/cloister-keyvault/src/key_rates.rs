//! The rates manifests set on keys (`KeyLimits::rate`), counted by keyvault per function
//! and key across all its executors and versions: redeploying a function does not refill its
//! budget. A version that sets another rate counts in a bucket of its own (two live versions
//! with different rates cannot reset each other's). The counts live in this keyvault's
//! memory. A keyvault that unsealed an existing store (a restart, which a hostile host can
//! cause at will) starts every bucket as if it had been emptied at that moment: a restart
//! never gives more than the steady refill. Only a keyvault that created its store starts
//! them full (docs/CAPABILITIES.md).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use cloister_types::KeyRate;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// One token bucket per (function id, key name, rate).
pub struct KeyRates {
    buckets: Mutex<HashMap<(String, String, u32, u32), DefaultDirectRateLimiter>>,
    /// When buckets were last known empty (keyvault's start); `None`: they start full.
    emptied_at: Option<std::time::Instant>,
}

impl Default for KeyRates {
    /// Buckets that start full: for a keyvault that has just created its store.
    fn default() -> Self {
        Self {
            buckets: Mutex::default(),
            emptied_at: None,
        }
    }
}

impl std::fmt::Debug for KeyRates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRates").finish_non_exhaustive()
    }
}

/// The key signed as often as its rate allows; `retry_after` is when the next use fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpent {
    /// How long until one more use is allowed.
    pub retry_after: Duration,
}

fn quota(rate: KeyRate) -> Option<Quota> {
    let count = NonZeroU32::new(rate.count)?;
    let period = Duration::from_secs(u64::from(rate.seconds)) / rate.count;
    Some(Quota::with_period(period)?.allow_burst(count))
}

impl KeyRates {
    /// Buckets that count as emptied at `at` (keyvault's start over an existing store):
    /// each holds what the rate refilled since.
    pub fn emptied_at(at: std::time::Instant) -> Self {
        Self {
            buckets: Mutex::default(),
            emptied_at: Some(at),
        }
    }

    /// Takes one use of key `name` of `function_id` under `rate`.
    pub fn take(&self, function_id: &str, name: &str, rate: KeyRate) -> Result<(), RateSpent> {
        // A rate that cannot form a quota was refused when the manifest was registered.
        let Some(q) = quota(rate) else {
            return Err(RateSpent {
                retry_after: Duration::from_secs(u64::from(rate.seconds)),
            });
        };
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets
            .entry((
                function_id.to_owned(),
                name.to_owned(),
                rate.count,
                rate.seconds,
            ))
            .or_insert_with(|| {
                let bucket = RateLimiter::direct(q);
                if let Some(at) = self.emptied_at {
                    // What the refill has not yet given back since the buckets were emptied.
                    let window = u128::from(rate.seconds) * 1_000;
                    let elapsed = at.elapsed().as_millis().min(window);
                    let missing = (u128::from(rate.count) * (window - elapsed)).div_ceil(window);
                    if let Some(n) = u32::try_from(missing).ok().and_then(NonZeroU32::new) {
                        let _ = bucket.check_n(n);
                    }
                }
                bucket
            });
        bucket.check().map_err(|not_until| RateSpent {
            retry_after: not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_restart_a_bucket_holds_only_what_the_rate_refilled_since() {
        let hour = KeyRate {
            count: 10,
            seconds: 3600,
        };
        // Just restarted: nothing to spend.
        let r = KeyRates::emptied_at(std::time::Instant::now());
        assert!(r.take("f", "k", hour).is_err());
        // Restarted half a window ago: half the burst.
        let half = std::time::Instant::now()
            .checked_sub(Duration::from_secs(1800))
            .unwrap();
        let r = KeyRates::emptied_at(half);
        let taken = (0..10).filter(|_| r.take("f", "k", hour).is_ok()).count();
        assert_eq!(taken, 5);
        // A whole window ago: full.
        let r = KeyRates::emptied_at(
            std::time::Instant::now()
                .checked_sub(Duration::from_secs(3600))
                .unwrap(),
        );
        assert_eq!(
            (0..11).filter(|_| r.take("f", "k", hour).is_ok()).count(),
            10
        );
    }

    #[test]
    fn a_rate_allows_its_burst_then_refuses_per_function_and_key() {
        let r = KeyRates::default();
        let rate = KeyRate {
            count: 3,
            seconds: 3600,
        };
        for _ in 0..3 {
            r.take("f1", "k", rate).unwrap();
        }
        let spent = r.take("f1", "k", rate).unwrap_err();
        assert!(spent.retry_after > Duration::from_secs(1000));
        // Another key and another function have their own budgets.
        r.take("f1", "other", rate).unwrap();
        r.take("f2", "k", rate).unwrap();
        // Another rate (a new version's manifest) has a bucket of its own, and going back to
        // the first rate does not refill it.
        r.take(
            "f1",
            "k",
            KeyRate {
                count: 1,
                seconds: 3600,
            },
        )
        .unwrap();
        assert!(
            r.take(
                "f1",
                "k",
                KeyRate {
                    count: 1,
                    seconds: 3600
                }
            )
            .is_err()
        );
        assert!(r.take("f1", "k", rate).is_err());
    }
}
