//! How many audit entries parties keyvault does not trust can make it write.
//!
//! The gateway reports events, relays requests that keyvault refuses (each refusal is
//! audited) and the host can open channel connections whose attestation fails (audited too).
//! Without a limit, a hostile gateway or host could grow the audit log without end. Each kind
//! of entry has its own budget (GCRA, [`governor`]): the action, and for refusals also the
//! refusal's code, so a flood of one kind (bad tokens reported as `auth.failure`, garbage
//! deploys refused `invalid_request`) cannot use up the budget of another (a token
//! revocation, a `rollback_detected`). Beyond its budget an entry is not written but counted,
//! and keyvault writes the counts itself as one `audit.suppressed` entry per checkpoint tick,
//! so what was left out is still on the chain. The kinds are a fixed set (actions × error
//! codes), so the budgets' memory is bounded whatever the gateway sends.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use cloister_audit::{Action, AuditDraft};
use cloister_types::ErrorCode;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Entries of one kind per second the untrusted parties may cause, sustained.
pub const DEFAULT_PER_SECOND: u32 = 20;
/// Entries of one kind they may cause at once.
pub const DEFAULT_BURST: u32 = 200;

/// A kind of entry: its action's name and, when it carries one, its stable `code` detail.
type Kind = (&'static str, &'static str);

/// The budgets and the counts of what they left out since the last summary.
pub struct AuditBudget {
    limiter: DefaultKeyedRateLimiter<Kind>,
    per_second: u32,
    suppressed: Mutex<BTreeMap<&'static str, u64>>,
}

/// The kind of `draft`: codes that are not stable error codes count as one kind.
fn kind(draft: &AuditDraft) -> Kind {
    let code = draft
        .details
        .get("code")
        .and_then(|c| c.as_str())
        .map(|c| ErrorCode::parse(c).map_or("other", ErrorCode::as_str))
        .unwrap_or("");
    (draft.action.as_str(), code)
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
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            per_second: rate.get(),
            suppressed: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether `draft` may be written now (its kind's budget allows); when not, it is
    /// counted by action.
    pub fn admit(&self, draft: &AuditDraft) -> bool {
        let kind = kind(draft);
        if self.limiter.check_key(&kind).is_ok() {
            return true;
        }
        let mut counts = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(kind.0).or_insert(0);
        *n += 1;
        if *n == 1 {
            tracing::warn!(
                action = kind.0,
                code = kind.1,
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

    fn draft(action: Action, code: Option<&str>) -> AuditDraft {
        let d = AuditDraft::new("gateway", action, "x");
        match code {
            Some(c) => d.detail("code", c),
            None => d,
        }
    }

    #[test]
    fn each_kind_has_its_own_budget_so_one_flood_does_not_silence_another() {
        let b = AuditBudget::new(1, 3);
        let flood = draft(Action::AuthFailure, None);
        assert_eq!((0..10).filter(|_| b.admit(&flood)).count(), 3);
        // Other kinds still have their whole budget: another action, and a refusal code.
        assert!(b.admit(&draft(Action::TokenRevoke, None)));
        let garbage = draft(Action::AuthorityRefusal, Some("invalid_request"));
        assert_eq!((0..10).filter(|_| b.admit(&garbage)).count(), 3);
        assert!(b.admit(&draft(Action::AuthorityRefusal, Some("rollback_detected"))));
        // Made-up codes are one kind, not one budget each.
        let made_up = (0..10)
            .filter(|i| b.admit(&draft(Action::AuthorityRefusal, Some(&format!("x{i}")))))
            .count();
        assert_eq!(made_up, 3);
    }

    #[test]
    fn beyond_the_burst_entries_are_counted_by_action_and_summarised_once() {
        let b = AuditBudget::new(1, 3);
        let (refusal, attestation) = (
            draft(Action::AuthorityRefusal, Some("bad_signature")),
            draft(Action::AttestationFailure, None),
        );
        let admitted = (0..20)
            .filter(|i| b.admit(if i % 2 == 0 { &refusal } else { &attestation }))
            .count();
        assert_eq!(
            admitted, 6,
            "each kind's burst, then nothing within the same instant"
        );
        let left_out = b.take().expect("fourteen were left out");
        let s = left_out.draft();
        assert_eq!(s.action, Action::AuditSuppressed);
        assert_eq!(s.details["total"], 14);
        assert_eq!(s.details["counts"]["authority.refusal"], 7);
        assert_eq!(s.details["counts"]["attestation.failure"], 7);
        assert!(b.take().is_none(), "counts start again after a summary");
        b.restore(left_out);
        assert!(!b.admit(&refusal), "the budget is still spent");
        assert_eq!(b.take().expect("restored").draft().details["total"], 15);
    }
}
