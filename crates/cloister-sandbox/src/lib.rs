//! The execution sandbox: what runs inside an executor's worker process.
//!
//! A worker is a separate OS process (the `cloister` binary started with a hidden
//! subcommand) that serves exactly one function. It hardens itself ([`hardening`]) before it
//! reads any untrusted input, then answers [`protocol`] frames from its supervisor over an
//! inherited socket, running JavaScript in QuickJS ([`engine`]) with a fresh context per call.

pub mod engine;
pub mod fetch_js;
pub mod frame;
pub mod hardening;
pub mod heap;
pub mod host;
pub mod protocol;
pub mod worker;

/// File descriptor number on which a worker finds its channel to the supervisor.
pub const WORKER_CHANNEL_FD: i32 = 3;

/// First argument of a worker process (`cloister-worker __worker HEAP UID`), so one is easy
/// to tell apart in a process list.
pub const WORKER_ARG: &str = "__worker";
