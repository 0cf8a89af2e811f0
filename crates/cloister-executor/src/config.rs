//! Executor configuration, validated once at start.

use std::path::PathBuf;
use std::time::Duration;

use cloister_types::ServerLimits;

/// How an executor runs its workers.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Executable started for each worker (`cloister-executord` runs the sealed copy it
    /// measured, see [`crate::image`]).
    pub worker_exe: PathBuf,
    /// Server-wide limits; requests asking for more are clamped to these.
    pub limits: ServerLimits,
    /// Most concurrently running workers for one function version.
    pub max_workers_per_function: usize,
    /// Most live workers in total (idle ones are evicted to make room).
    pub max_workers_total: usize,
    /// Idle workers older than this are stopped.
    pub idle_timeout: Duration,
    /// Extra time the supervisor grants past a deadline before killing the worker.
    pub kill_grace: Duration,
    /// Native stack budget for JavaScript.
    pub stack_bytes: usize,
    /// Distinct function sources kept in memory.
    pub code_cache_entries: usize,
    /// Unprivileged uids (each also the gid) workers switch to when the executor runs as
    /// root: consecutive workers take consecutive uids from this range, so no two live
    /// workers share one.
    pub worker_uids: std::ops::Range<u32>,
}

/// Default seconds a fetched secret may be served from memory.
pub const DEFAULT_SECRETS_TTL_SECS: u64 = 30;
/// Longest allowed secrets cache lifetime: a build removed from keyvault's policy, or a
/// rotated value, lingers in an executor's memory at most this long.
pub const MAX_SECRETS_TTL_SECS: u64 = 300;

/// First uid of the default worker range: far above login and container-mapped ranges.
pub const DEFAULT_WORKER_UID_BASE: u32 = 0x7000_0000;
/// Size of the default worker uid range (more than the most live workers allowed).
pub const DEFAULT_WORKER_UID_COUNT: u32 = 1 << 16;

impl ExecutorConfig {
    /// Defaults sized for the machine this runs on.
    pub fn new(worker_exe: PathBuf) -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self {
            worker_exe,
            limits: ServerLimits::default(),
            max_workers_per_function: (cpus * 2).max(4),
            max_workers_total: 256,
            idle_timeout: Duration::from_secs(300),
            kill_grace: Duration::from_millis(200),
            stack_bytes: 1 << 20,
            code_cache_entries: 1024,
            worker_uids: DEFAULT_WORKER_UID_BASE
                ..DEFAULT_WORKER_UID_BASE + DEFAULT_WORKER_UID_COUNT,
        }
    }
}

/// The worker uid range `base..base + count`, or `None` when it includes 0 or overflows.
pub fn worker_uid_range(base: u32, count: u32) -> Option<std::ops::Range<u32>> {
    let end = base.checked_add(count)?;
    (base > 0 && count > 0).then_some(base..end)
}
