//! What every Cloister server process shares: the sockets and credentials `serve` hands
//! it, the hardening of a trusted process, the simulated TEE's measurements and policies,
//! and the names and interface of the trusted binaries.
//!
//! The trusted binaries (`cloister-keyvaultd`, `cloister-executord`, `cloister-worker`) and
//! the `cloister` CLI (which also runs the untrusted gateway) all link this crate; it links
//! nothing HTTP-facing, so it adds nothing to the trusted roles they do not need. Like the
//! CLI, it is process glue: its functions return `anyhow` errors meant for an operator.

#![deny(missing_docs)]

pub mod credentials;
pub mod files;
pub mod flags;
pub mod harden;
pub mod listen;
pub mod logging;
pub mod tee;
pub mod trusted;
