//! The keyvault process (trusted), built as its own small executable, `cloister-keyvaultd`:
//! its measurement covers only this code (no HTTP server, no CLI framework, no gateway).
//!
//! `cloister-keyvaultd [run] FLAGS` unseals (or initialises) the vault and serves;
//! `cloister-keyvaultd migrate` re-seals the root to this executable with the recovery key;
//! `restore-plan` and `restore` accept a database put back from a backup (admin-signed).
//! `cloister serve --dev` starts it; in production an operator or orchestrator does.

#![deny(missing_docs)]

mod args;
mod migrate;
mod recovery;
mod restore;
mod run;

pub use restore::{RestorePlan, Restored};

use std::process::ExitCode;

use cloister_role::trusted::KEYVAULT_BIN;

/// Entry point of the `cloister-keyvaultd` executable.
pub fn main() -> ExitCode {
    cloister_role::harden::private_files();
    let mode = match args::parse(std::env::args_os().skip(1)) {
        Ok(m) => m,
        Err(e) => return cloister_role::flags::usage_error(KEYVAULT_BIN, &e),
    };
    let (threads, json) = match &mode {
        args::Mode::Version => {
            println!("{}", cloister_role::trusted::version_line(KEYVAULT_BIN));
            return ExitCode::SUCCESS;
        }
        args::Mode::Help => {
            print!("{}", args::HELP);
            return ExitCode::SUCCESS;
        }
        args::Mode::Run(a) => (a.role.threads(), false),
        args::Mode::Migrate(a) => (1, a.json),
        // Their stdout is JSON for the CLI; errors go to stderr.
        args::Mode::RestorePlan(_) | args::Mode::Restore(_) => (1, false),
    };
    cloister_role::logging::init(if json { "warn" } else { "info" });
    let result = cloister_role::listen::runtime(threads).and_then(|rt| {
        rt.block_on(async move {
            match mode {
                args::Mode::Run(a) => run::run(*a).await,
                args::Mode::Migrate(a) => migrate::run(a).await,
                args::Mode::RestorePlan(dir) => restore::plan(&dir).await,
                args::Mode::Restore(dir) => restore::apply(&dir).await,
                args::Mode::Version | args::Mode::Help => Ok(()),
            }
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": {"code": "failed", "message": format!("{e:#}")}})
                );
            } else {
                eprintln!("{KEYVAULT_BIN}: error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
