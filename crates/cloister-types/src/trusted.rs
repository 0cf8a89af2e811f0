//! The trusted executables' names and the interface revision their launcher and they agree
//! on. Here (not in `cloister-role`) so the worker can print its version line without
//! linking anything else.

/// keyvault's executable.
pub const KEYVAULT_BIN: &str = "cloister-keyvaultd";
/// The executor's executable.
pub const EXECUTOR_BIN: &str = "cloister-executord";
/// The sandboxed worker's executable (run by the executor).
pub const WORKER_BIN: &str = "cloister-worker";

/// Revision of the flags, descriptors and subcommands the launcher passes the trusted
/// binaries; a binary of another revision is refused before it is started.
pub const INTERFACE: u32 = 1;

/// What `<bin> --version` prints: name, release and interface revision.
pub fn version_line(bin: &str) -> String {
    format!(
        "{bin} {} (interface {INTERFACE})",
        env!("CARGO_PKG_VERSION")
    )
}
