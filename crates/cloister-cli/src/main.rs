//! `cloister`: the platform (serve, gateway, executor roles) and its command-line client.

mod attest_cmd;
mod bench;
mod bench_secrets;
mod cli;
mod client_cmds;
mod credentials;
mod harden;
mod identity_cmd;
mod output;
mod policy_cmd;
mod restore_cmd;
mod roles;
mod secret_cmd;
mod serve;
mod tee;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // A worker must not start threads or a runtime before it has hardened itself, so it is
    // dispatched before anything else happens in this process.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(cloister_executor::worker::WORKER_SUBCOMMAND) {
        let heap = args
            .get(2)
            .and_then(|h| h.parse::<usize>().ok())
            .unwrap_or(0);
        // A missing or unparsable uid is 0, which the worker refuses when started as root.
        let uid = args.get(3).and_then(|u| u.parse::<u32>().ok()).unwrap_or(0);
        let code = cloister_sandbox::worker::run(heap, uid);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    harden::private_files();
    init_tracing(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.runtime_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    let result = runtime.block_on(run(cli));
    match result {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e, json);
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(cmd: &Command) {
    let default = match cmd {
        Command::Serve(_)
        | Command::Gateway(_)
        | Command::Executor(_)
        | Command::Keyvault(crate::cli::KeyvaultCommand::Run(_)) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let conn = cli.connection();
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Gateway(args) => roles::gateway(args).await,
        Command::Executor(args) => roles::executor(args).await,
        Command::Fn(cmd) => client_cmds::function(conn, cmd, cli.json).await,
        Command::Token(cmd) => client_cmds::token(conn, cmd, cli.json).await,
        Command::Bench(args) => bench::run(conn, args, cli.json).await,
        Command::Attest(cmd) => attest_cmd::run(cmd, cli.json),
        Command::Keyvault(crate::cli::KeyvaultCommand::Run(args)) => roles::keyvault(args).await,
        Command::Keyvault(cmd) => secret_cmd::keyvault(conn, cmd, cli.json).await,
        Command::Secret(cmd) => secret_cmd::secret(conn, cmd, cli.json).await,
        Command::Audit(cmd) => secret_cmd::audit(conn, cmd, cli.json).await,
        Command::Identity(cmd) => identity_cmd::run(conn, cmd, cli.json).await,
    }
}
