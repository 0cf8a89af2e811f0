//! Recent invocations per function, in the gateway's memory only (never the database), for
//! `cloister fn history` and `fn logs`: metadata of every invocation, and for plain ones the
//! lines the function logged and its error message — what the caller was shown anyway.
//! Sealed invocations keep metadata only: the gateway never holds their logs. Bounded in
//! count per function, in bytes per entry, in functions, and in time.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cloister_types::wire::InvocationRecord;

/// Invocations kept per function.
pub const PER_FUNCTION: usize = 200;
/// How long an invocation is kept.
pub const RETENTION: Duration = Duration::from_secs(3600);
/// Functions with a history (the oldest history is dropped past this).
const MAX_FUNCTIONS: usize = 10_000;
/// Log bytes kept per invocation; the rest is cut with a marker.
const MAX_LOG_BYTES: usize = 16 * 1024;

struct Kept {
    at: Instant,
    record: InvocationRecord,
}

#[derive(Default)]
struct Inner {
    by_function: HashMap<String, VecDeque<Kept>>,
    next_seq: u64,
}

/// The recent invocations of every function, keyed by function id (a function deleted and
/// re-created under its name by someone else does not inherit them).
#[derive(Default)]
pub struct History(Mutex<Inner>);

/// The current time in RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `logs` cut to [`MAX_LOG_BYTES`] in all.
fn bounded(logs: Vec<String>) -> Vec<String> {
    let mut left = MAX_LOG_BYTES;
    let mut out = Vec::new();
    for l in logs {
        if l.len() > left {
            out.push("[… further log lines not kept]".to_owned());
            break;
        }
        left -= l.len();
        out.push(l);
    }
    out
}

impl History {
    /// Records an invocation of `function_id` (its `seq` is assigned here).
    pub fn record(&self, function_id: &str, mut record: InvocationRecord) {
        record.logs = bounded(std::mem::take(&mut record.logs));
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.next_seq += 1;
        record.seq = g.next_seq;
        if !g.by_function.contains_key(function_id) && g.by_function.len() >= MAX_FUNCTIONS {
            // Drop the history whose newest entry is oldest.
            let stale = g
                .by_function
                .iter()
                .min_by_key(|(_, q)| q.back().map(|k| k.at))
                .map(|(id, _)| id.clone());
            if let Some(id) = stale {
                g.by_function.remove(&id);
            }
        }
        let q = g.by_function.entry(function_id.to_owned()).or_default();
        if q.len() >= PER_FUNCTION {
            q.pop_front();
        }
        q.push_back(Kept {
            at: Instant::now(),
            record,
        });
    }

    /// The invocations of `function_id` after `after`, oldest first, at most `limit`
    /// (the most recent ones when there are more).
    pub fn list(&self, function_id: &str, after: u64, limit: usize) -> Vec<InvocationRecord> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = g.by_function.get_mut(function_id) else {
            return Vec::new();
        };
        while q.front().is_some_and(|k| k.at.elapsed() > RETENTION) {
            q.pop_front();
        }
        let newer: Vec<&Kept> = q.iter().filter(|k| k.record.seq > after).collect();
        let skip = newer.len().saturating_sub(limit);
        newer[skip..].iter().map(|k| k.record.clone()).collect()
    }

    /// Forgets a function's history (it was deleted).
    pub fn forget(&self, function_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_function
            .remove(function_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(outcome: &str, logs: Vec<String>) -> InvocationRecord {
        InvocationRecord {
            seq: 0,
            at: String::new(),
            execution_id: "e".into(),
            version: 1,
            outcome: outcome.into(),
            duration_ms: 1.0,
            sealed: false,
            logs,
            error: None,
        }
    }

    #[test]
    fn histories_are_bounded_per_function_and_paged_by_seq() {
        let h = History::default();
        for i in 0..(PER_FUNCTION + 5) {
            h.record("f", rec(&format!("o{i}"), vec![]));
        }
        h.record("g", rec("other", vec![]));
        let all = h.list("f", 0, usize::MAX);
        assert_eq!(all.len(), PER_FUNCTION);
        assert_eq!(all[0].outcome, "o5", "the oldest are dropped first");
        let last = all.last().unwrap().seq;
        assert!(h.list("f", last, 10).is_empty());
        assert_eq!(h.list("f", 0, 2).len(), 2);
        assert_eq!(h.list("f", 0, 2)[1].seq, last, "a limit keeps the newest");
        assert_eq!(h.list("g", 0, 10).len(), 1);
        h.forget("f");
        assert!(h.list("f", 0, 10).is_empty());
    }

    #[test]
    fn log_lines_are_cut_past_the_byte_budget() {
        let h = History::default();
        let big = vec!["x".repeat(10_000), "y".repeat(10_000), "z".into()];
        h.record("f", rec("ok", big));
        let logs = &h.list("f", 0, 1)[0].logs;
        assert_eq!(logs.len(), 2);
        assert!(logs[1].contains("not kept"));
    }
}
