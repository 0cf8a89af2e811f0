//! Prometheus metrics of the gateway, plus the executor's worker pool at scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// Labels of an invocation outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok` or the error code.
    pub outcome: String,
}

/// Labels of one function's invocation outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionOutcomeLabels {
    /// Function name.
    pub function: String,
    /// `ok` or the error code.
    pub outcome: String,
}

/// Labels of one function.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    /// Function name.
    pub function: String,
}

/// Latency buckets: 100 µs doubling to about 13 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Labels of one warm worker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// Function id served.
    pub function_id: String,
    /// Version served.
    pub version: String,
    /// Process id.
    pub pid: String,
}

/// Labels of an outbound-request series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EgressLabels {
    /// Function id.
    pub function_id: String,
    /// The allowlist entry (`refused`: none matched; `other` past the executor's cap).
    pub origin: String,
}

/// Outbound requests of functions (admins only: they name functions and the hosts they
/// contact), as counters fed by the executor's totals.
#[derive(Default)]
pub struct EgressMetrics {
    requests: Family<EgressLabels, Counter>,
    failures: Family<EgressLabels, Counter>,
    sent: Family<EgressLabels, Counter>,
    received: Family<EgressLabels, Counter>,
    seen: std::sync::Mutex<std::collections::HashMap<EgressLabels, [u64; 4]>>,
}

impl EgressMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "egress_requests",
            "Outbound requests of each function by origin",
            self.requests.clone(),
        );
        r.register(
            "egress_failures",
            "Outbound requests refused or failed, by function and origin",
            self.failures.clone(),
        );
        r.register(
            "egress_sent_bytes",
            "Bytes sent by outbound requests, by function and origin",
            self.sent.clone(),
        );
        r.register(
            "egress_received_bytes",
            "Bytes received by outbound requests, by function and origin",
            self.received.clone(),
        );
    }

    /// Advances the counters to the executor's totals (which restart at zero with it).
    fn apply(&self, totals: &[cloister_rpc::executor::EgressTotals]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for t in totals {
            let labels = EgressLabels {
                function_id: t.function_id.clone(),
                origin: t.origin.clone(),
            };
            let now = [t.requests, t.failures, t.bytes_sent, t.bytes_received];
            let before = seen.insert(labels.clone(), now).unwrap_or_default();
            let restarted = now.iter().zip(before).any(|(n, b)| *n < b);
            for (i, family) in [&self.requests, &self.failures, &self.sent, &self.received]
                .into_iter()
                .enumerate()
            {
                let delta = if restarted {
                    now[i]
                } else {
                    now[i] - before[i]
                };
                family.get_or_create(&labels).inc_by(delta);
            }
        }
    }
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Per-function series, shown to admins only: they name every tenant's functions and
    /// their traffic.
    function_registry: Registry,
    /// Invocations by outcome.
    pub invocations: Family<OutcomeLabels, Counter>,
    /// End-to-end invocation latency at the gateway, seconds.
    pub invocation_seconds: Histogram,
    /// Invocations of each deployed function by outcome (only names that resolved to a
    /// function: a caller cannot add labels by inventing names).
    pub function_invocations: Family<FunctionOutcomeLabels, Counter>,
    /// Invocation latency of each deployed function at the gateway, seconds.
    pub function_invocation_seconds: Family<FunctionLabels, Histogram>,
    /// Deploys by outcome.
    pub deploys: Family<OutcomeLabels, Counter>,
    /// Resident memory of each warm worker (admins only: it names functions and versions).
    pub worker_rss: Family<WorkerLabels, Gauge>,
    /// Number of warm workers.
    pub workers: Gauge,
    /// Workers started (a counter: exported as `cloister_workers_spawned_total`).
    pub workers_spawned: Counter,
    /// Workers retired: limits hit, crashed, idle (`cloister_workers_retired_total`).
    pub workers_retired: Counter,
    /// Held from fetching the executor's status to applying it, so that two scrapes cannot
    /// apply their reports out of order (which would look like an executor restart).
    pub scrape: tokio::sync::Mutex<()>,
    /// The executor's spawned total at the last status report.
    spawned_seen: AtomicU64,
    /// The executor's retired total at the last status report.
    retired_seen: AtomicU64,
    /// 1 when the executor's workers are confined from the filesystem.
    pub filesystem_isolated: Gauge,
    /// Requests refused by a rate limit.
    pub rate_limited: Counter,
    /// Connections refused at the door (connection caps).
    pub connections_refused: Counter,
    /// Outbound requests of functions.
    pub egress: EgressMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cloister");
        let invocations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "invocations",
            "Function invocations by outcome",
            invocations.clone(),
        );
        let invocation_seconds = latency_histogram();
        registry.register(
            "invocation_seconds",
            "Invocation latency at the gateway",
            invocation_seconds.clone(),
        );
        let mut function_registry = Registry::with_prefix("cloister");
        let function_invocations = Family::<FunctionOutcomeLabels, Counter>::default();
        function_registry.register(
            "function_invocations",
            "Invocations of each deployed function by outcome",
            function_invocations.clone(),
        );
        let worker_rss = Family::<WorkerLabels, Gauge>::default();
        let function_invocation_seconds = Family::<FunctionLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        function_registry.register(
            "function_invocation_seconds",
            "Invocation latency of each deployed function at the gateway",
            function_invocation_seconds.clone(),
        );
        let deploys = Family::<OutcomeLabels, Counter>::default();
        registry.register("deploys", "Deploy attempts by outcome", deploys.clone());
        function_registry.register(
            "worker_resident_bytes",
            "Resident memory of each warm worker",
            worker_rss.clone(),
        );
        let workers = Gauge::default();
        registry.register("workers", "Warm workers in the executor", workers.clone());
        let workers_spawned = Counter::default();
        registry.register(
            "workers_spawned",
            "Workers the executor started",
            workers_spawned.clone(),
        );
        let workers_retired = Counter::default();
        registry.register(
            "workers_retired",
            "Workers the executor retired (limits hit, crashed, idle)",
            workers_retired.clone(),
        );
        let filesystem_isolated = Gauge::default();
        registry.register(
            "worker_filesystem_isolated",
            "1 when workers run without any filesystem access (Landlock)",
            filesystem_isolated.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit (429)",
            rate_limited.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections refused because a connection cap was reached",
            connections_refused.clone(),
        );
        let egress = EgressMetrics::default();
        egress.register(&mut function_registry);
        Self {
            egress,
            registry,
            function_registry,
            rate_limited,
            connections_refused,
            invocations,
            invocation_seconds,
            function_invocations,
            function_invocation_seconds,
            deploys,
            worker_rss,
            workers,
            workers_spawned,
            workers_retired,
            scrape: tokio::sync::Mutex::new(()),
            spawned_seen: AtomicU64::new(0),
            retired_seen: AtomicU64::new(0),
            filesystem_isolated,
        }
    }
}

impl Metrics {
    /// Counts one invocation outcome.
    /// `function` is the name of the deployed function it resolved to, if it did.
    pub fn invocation(&self, function: Option<&str>, outcome: &str, seconds: f64) {
        self.invocations
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        self.invocation_seconds.observe(seconds);
        if let Some(f) = function {
            self.function_invocations
                .get_or_create(&FunctionOutcomeLabels {
                    function: f.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .inc();
            self.function_invocation_seconds
                .get_or_create(&FunctionLabels {
                    function: f.to_owned(),
                })
                .observe(seconds);
        }
    }

    /// Counts one deploy outcome.
    pub fn deploy(&self, outcome: &str) {
        self.deploys
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Replaces the executor pool gauges with a fresh status report.
    pub fn set_executor_status(&self, s: &cloister_rpc::executor::StatusResponse) {
        self.worker_rss.clear();
        for w in &s.workers {
            let labels = WorkerLabels {
                function_id: w.function_id.clone(),
                version: w.version.to_string(),
                pid: w.pid.to_string(),
            };
            self.worker_rss
                .get_or_create(&labels)
                .set(i64::try_from(w.rss_bytes).unwrap_or(i64::MAX));
        }
        self.workers.set(s.workers.len() as i64);
        advance(&self.workers_spawned, &self.spawned_seen, s.spawned_total);
        advance(&self.workers_retired, &self.retired_seen, s.retired_total);
        self.filesystem_isolated
            .set(i64::from(s.filesystem_isolated));
        self.egress.apply(&s.egress);
    }

    /// Prometheus text exposition of every metric.
    /// The OpenMetrics text; per-function series only when `per_function` (admins).
    pub fn render(&self, per_function: bool) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        let ok = encode_registry(&mut out, &self.registry).is_ok()
            && (!per_function || encode_registry(&mut out, &self.function_registry).is_ok())
            && encode_eof(&mut out).is_ok();
        if !ok {
            out.clear();
        }
        out
    }
}

/// Moves `counter` on by what the executor's running `total` grew since the total last
/// seen (`seen`). The executor's totals start again from zero when it restarts; a counter
/// never goes down, so it then grows by the new total (what the restarted executor counted
/// before a scrape that saw it above the old total is missed). Callers hold `scrape`.
fn advance(counter: &Counter, seen: &AtomicU64, total: u64) {
    let before = seen.swap(total, Ordering::Relaxed);
    counter.inc_by(if total >= before {
        total - before
    } else {
        total
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_totals_are_counters_that_survive_an_executor_restart() {
        let m = Metrics::default();
        let status = |spawned, retired| cloister_rpc::executor::StatusResponse {
            spawned_total: spawned,
            retired_total: retired,
            ..Default::default()
        };
        m.set_executor_status(&status(5, 2));
        m.set_executor_status(&status(7, 2));
        assert_eq!((m.workers_spawned.get(), m.workers_retired.get()), (7, 2));
        // The executor restarted: its totals start from zero again.
        m.set_executor_status(&status(1, 0));
        m.set_executor_status(&status(3, 1));
        assert_eq!((m.workers_spawned.get(), m.workers_retired.get()), (10, 3));
        let text = m.render(true);
        assert!(
            text.contains("# TYPE cloister_workers_spawned counter"),
            "{text}"
        );
        assert!(text.contains("cloister_workers_spawned_total 10"), "{text}");
    }

    #[test]
    fn egress_totals_become_per_function_counters_for_admins_only() {
        let m = Metrics::default();
        let status = |requests, sent| cloister_rpc::executor::StatusResponse {
            egress: vec![cloister_rpc::executor::EgressTotals {
                function_id: "f1".into(),
                origin: "https://api.example.com".into(),
                requests,
                failures: 1,
                bytes_sent: sent,
                bytes_received: 10,
            }],
            ..Default::default()
        };
        m.set_executor_status(&status(3, 300));
        m.set_executor_status(&status(5, 500));
        // The executor restarted.
        m.set_executor_status(&status(2, 200));
        let text = m.render(true);
        let series = "{function_id=\"f1\",origin=\"https://api.example.com\"}";
        assert!(
            text.contains(&format!("cloister_egress_requests_total{series} 7")),
            "{text}"
        );
        assert!(
            text.contains(&format!("cloister_egress_sent_bytes_total{series} 700")),
            "{text}"
        );
        assert!(
            text.contains(&format!("cloister_egress_failures_total{series} 2")),
            "{text}"
        );
        assert!(
            !m.render(false).contains("egress"),
            "per-function series are for admins"
        );
    }
}
