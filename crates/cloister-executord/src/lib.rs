//! The executor process (trusted), built as its own small executable, `cloister-executord`:
//! its measurement covers this code and, through its configuration digest, the worker
//! executable it runs and the keyvault builds it trusts. Nothing else: no HTTP server, no
//! CLI framework, no gateway.

#![deny(missing_docs)]

mod args;
mod run;

use std::process::ExitCode;

use cloister_role::trusted::EXECUTOR_BIN;

/// Entry point of the `cloister-executord` executable.
pub fn main() -> ExitCode {
    cloister_role::harden::private_files();
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(args::Mode::Run(a)) => a,
        Ok(args::Mode::Version) => {
            println!("{}", cloister_role::trusted::version_line(EXECUTOR_BIN));
            return ExitCode::SUCCESS;
        }
        Ok(args::Mode::Help) => {
            print!("{}", args::HELP);
            return ExitCode::SUCCESS;
        }
        Err(e) => return cloister_role::flags::usage_error(EXECUTOR_BIN, &e),
    };
    cloister_role::logging::init("info");
    let result = cloister_role::listen::runtime(args.role.threads())
        .and_then(|rt| rt.block_on(run::run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{EXECUTOR_BIN}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
