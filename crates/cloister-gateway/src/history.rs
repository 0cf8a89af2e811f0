//! Recent invocations per function, in the gateway's memory only (never the database), for
//! `cloister fn history` and `fn logs`: metadata of every invocation, and for plain ones the
//! lines the function logged and its error message — what the caller was shown anyway.
//! Sealed invocations keep metadata only: the gateway never holds their logs. Bounded in
//! count per function, in bytes per entry and in all, in functions, and in time (expired
//! entries are dropped when the function's history is written or read).

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
/// Error-message bytes kept per invocation.
const MAX_ERROR_BYTES: usize = 2 * 1024;
/// Bytes of logs and messages kept in all: past it the oldest invocations go first.
pub const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;

struct Kept {
    at: Instant,
    bytes: usize,
    record: InvocationRecord,
}

/// One function's history; `seq` counts its own invocations only (a caller learns nothing of
/// other functions' traffic from it).
#[derive(Default)]
struct Function {
    kept: VecDeque<Kept>,
    next_seq: u64,
}

#[derive(Default)]
struct Inner {
    by_function: HashMap<String, Function>,
    total_bytes: usize,
}

impl Inner {
    /// Drops entries older than [`RETENTION`] from `id`'s history.
    fn expire(&mut self, id: &str) {
        if let Some(f) = self.by_function.get_mut(id) {
            while f.kept.front().is_some_and(|k| k.at.elapsed() > RETENTION) {
                if let Some(k) = f.kept.pop_front() {
                    self.total_bytes -= k.bytes;
                }
            }
        }
    }

    /// Drops the oldest entry of all (the function whose front is oldest).
    fn drop_oldest(&mut self) -> bool {
        let oldest = self
            .by_function
            .iter()
            .filter_map(|(id, f)| f.kept.front().map(|k| (k.at, id.clone())))
            .min()
            .map(|(_, id)| id);
        let Some(id) = oldest else { return false };
        if let Some(k) = self
            .by_function
            .get_mut(&id)
            .and_then(|f| f.kept.pop_front())
        {
            self.total_bytes -= k.bytes;
        }
        true
    }

    /// Drops expired entries everywhere, and histories left empty.
    fn sweep(&mut self) {
        let ids: Vec<String> = self.by_function.keys().cloned().collect();
        for id in ids {
            self.expire(&id);
        }
        self.by_function
            .retain(|_, f| !f.kept.is_empty() || f.next_seq == 0);
    }
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
        if let Some(e) = &mut record.error
            && e.len() > MAX_ERROR_BYTES
        {
            let mut cut = MAX_ERROR_BYTES;
            while !e.is_char_boundary(cut) {
                cut -= 1;
            }
            e.truncate(cut);
            e.push_str(" […]");
            e.shrink_to_fit();
        }
        let bytes = record.logs.iter().map(String::len).sum::<usize>()
            + record.error.as_ref().map_or(0, String::len)
            + 256;
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !g.by_function.contains_key(function_id) && g.by_function.len() >= MAX_FUNCTIONS {
            g.sweep();
            if g.by_function.len() >= MAX_FUNCTIONS {
                // Drop the history whose newest entry is oldest.
                let stale = g
                    .by_function
                    .iter()
                    .min_by_key(|(_, f)| f.kept.back().map(|k| k.at))
                    .map(|(id, _)| id.clone());
                if let Some(f) = stale.and_then(|id| g.by_function.remove(&id)) {
                    g.total_bytes -= f.kept.iter().map(|k| k.bytes).sum::<usize>();
                }
            }
        }
        g.expire(function_id);
        while g.total_bytes + bytes > MAX_TOTAL_BYTES && g.drop_oldest() {}
        let f = g.by_function.entry(function_id.to_owned()).or_default();
        f.next_seq += 1;
        record.seq = f.next_seq;
        let dropped = if f.kept.len() >= PER_FUNCTION {
            f.kept.pop_front().map_or(0, |k| k.bytes)
        } else {
            0
        };
        f.kept.push_back(Kept {
            at: Instant::now(),
            bytes,
            record,
        });
        g.total_bytes = g.total_bytes - dropped + bytes;
    }

    /// The invocations of `function_id` after `after`, oldest first, at most `limit`
    /// (the most recent ones when there are more).
    pub fn list(&self, function_id: &str, after: u64, limit: usize) -> Vec<InvocationRecord> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.expire(function_id);
        let Some(f) = g.by_function.get(function_id) else {
            return Vec::new();
        };
        let newer: Vec<&Kept> = f.kept.iter().filter(|k| k.record.seq > after).collect();
        let skip = newer.len().saturating_sub(limit);
        newer[skip..].iter().map(|k| k.record.clone()).collect()
    }

    /// Forgets a function's history (it was deleted).
    pub fn forget(&self, function_id: &str) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = g.by_function.remove(function_id) {
            g.total_bytes -= f.kept.iter().map(|k| k.bytes).sum::<usize>();
        }
    }

    /// Bytes of logs and messages held (for tests and metrics).
    pub fn bytes(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).total_bytes
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
    fn the_total_is_bounded_and_accounted() {
        let h = History::default();
        let line = "x".repeat(MAX_LOG_BYTES / 2);
        let per = MAX_LOG_BYTES / 2 + 256;
        let n = MAX_TOTAL_BYTES / per + 50;
        for i in 0..n {
            h.record(&format!("f{}", i % 500), rec("ok", vec![line.clone()]));
        }
        assert!(h.bytes() <= MAX_TOTAL_BYTES, "{}", h.bytes());
        assert!(h.bytes() > MAX_TOTAL_BYTES - 2 * per);
        // The newest survive, the oldest went.
        assert_eq!(h.list(&format!("f{}", (n - 1) % 500), 0, 1).len(), 1);
        for i in 0..500 {
            h.forget(&format!("f{i}"));
        }
        assert_eq!(h.bytes(), 0);
        // Each function counts its own invocations.
        h.record("a", rec("ok", vec![]));
        h.record("b", rec("ok", vec![]));
        assert_eq!(h.list("b", 0, 1)[0].seq, 1);
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
