//! The executor role (trusted): a supervisor of sandboxed worker processes.
//!
//! It receives invocations over the internal RPC, keeps warm workers per function version
//! (never two functions in one worker), enforces deadlines from outside the worker as well,
//! verifies code against its hash, and replaces any worker that hit a limit or crashed.

pub mod capabilities;
pub mod config;
pub mod fleet;
pub mod image;
pub mod keyvault_client;
pub mod link;
pub mod places;
pub mod pool;
pub mod receipt;
pub mod sealed;
pub mod secrets;
pub mod service;
pub mod worker;

pub use config::ExecutorConfig;
pub use service::ExecutorService;
