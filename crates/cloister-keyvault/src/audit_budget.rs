//! How many audit entries parties keyvault does not trust can make it write.
//!
//! The gateway reports events, relays requests that keyvault refuses (each refusal is
//! audited) and the host can open channel connections whose attestation fails (audited too).
//! Without a limit, a hostile gateway or host could grow the audit log without end. Entries
//! they cause share one budget (GCRA, [`governor`]); beyond it an entry is not written but
//! counted by action, and keyvault writes the counts itself as one `audit.suppressed` entry
//! per checkpoint tick, so what was left out is still on the chain.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use cloister_audit::{Action, AuditDraft};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Entries per second the untrusted parties may cause, sustained.
pub const DEFAULT_PER_SECOND: u32 = 20;
/// Entries they may cause at once.
pub const DEFAULT_BURST: u32 = 200;

/// The shared budget and the counts of what it left out since the last summary.
pub struct AuditBudget {
    limiter: DefaultDirectRateLimiter,
    per_second: u32,
    suppressed: Mutex<BTreeMap<&'static str, u64>>,
}

impl std::fmt::Debug for AuditBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditBudget")
            .field("per_second", &self.per_second)
            .finish_non_exhaustive()
    }
}

impl Default for AuditBudget {
    fn default() -> Self {
        Self::new(DEFAULT_PER_SECOND, DEFAULT_BURST)
    }
}

impl AuditBudget {
    /// A budget of `per_second` entries sustained and `burst` at once (each at least 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            per_second: rate.get(),
            suppressed: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether an entry of `action` may be written now; when not, it is counted.
    pub fn admit(&self, action: Action) -> bool {
        if self.limiter.check().is_ok() {
            return true;
        }
        let mut counts = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(action.as_str()).or_insert(0);
        *n += 1;
        if *n == 1 {
            tracing::warn!(
                action = action.as_str(),
                "audit budget for untrusted parties spent: counting, not writing, these entries"
            );
        }
        false
    }

    /// What was left out since the last call, if anything was; the counts start again from
    /// zero (give them back with [`AuditBudget::restore`] if the summary cannot be written).
    pub fn take(&self) -> Option<Suppressed> {
        let counts =
            std::mem::take(&mut *self.suppressed.lock().unwrap_or_else(|p| p.into_inner()));
        (!counts.is_empty()).then_some(Suppressed {
            counts,
            per_second: self.per_second,
        })
    }

    /// Puts back counts whose summary could not be written, so the next one carries them.
    pub fn restore(&self, s: Suppressed) {
        let mut mine = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        for (name, n) in s.counts {
            *mine.entry(name).or_insert(0) += n;
        }
    }
}

/// Entries the budget left out, by action.
#[derive(Debug)]
pub struct Suppressed {
    counts: BTreeMap<&'static str, u64>,
    per_second: u32,
}

impl Suppressed {
    /// The `audit.suppressed` entry that records them.
    pub fn draft(&self) -> AuditDraft {
        let mut draft = AuditDraft::new("keyvault", Action::AuditSuppressed, "audit")
            .detail("total", self.counts.values().sum::<u64>())
            .detail("budget_per_second", self.per_second);
        draft.details["counts"] = serde_json::json!(self.counts);
        draft
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_burst_entries_are_counted_by_action_and_summarised_once() {
        let b = AuditBudget::new(1, 3);
        let admitted = (0..10)
            .filter(|i| {
                b.admit(if i % 2 == 0 {
                    Action::AuthorityRefusal
                } else {
                    Action::AttestationFailure
                })
            })
            .count();
        assert_eq!(
            admitted, 3,
            "the burst, then nothing within the same instant"
        );
        let left_out = b.take().expect("seven were left out");
        let s = left_out.draft();
        assert_eq!(s.action, Action::AuditSuppressed);
        assert_eq!(s.details["total"], 7);
        assert_eq!(s.details["counts"]["authority.refusal"], 3);
        assert_eq!(s.details["counts"]["attestation.failure"], 4);
        assert!(b.take().is_none(), "counts start again after a summary");
        b.restore(left_out);
        assert!(
            !b.admit(Action::AuthorityRefusal),
            "the budget is still spent"
        );
        assert_eq!(b.take().expect("restored").draft().details["total"], 8);
    }
}
