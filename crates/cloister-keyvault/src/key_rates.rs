//! The rates manifests set on keys (`KeyLimits::rate`), counted by keyvault per function
//! and key across all its executors and versions: redeploying a function does not refill its
//! budget. A version that sets another rate counts in a bucket of its own (two live versions
//! with different rates cannot reset each other's). The counts live in this keyvault's
//! memory (a restart starts them full; docs/CAPABILITIES.md).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use cloister_types::KeyRate;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// One token bucket per (function id, key name, rate).
#[derive(Default)]
pub struct KeyRates {
    buckets: Mutex<HashMap<(String, String, u32, u32), DefaultDirectRateLimiter>>,
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
            .or_insert_with(|| RateLimiter::direct(q));
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
