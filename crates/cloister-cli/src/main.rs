//! `cloister`: the platform launcher (`serve --dev`), the gateway role and the command-line
//! client. The trusted roles run from their own executables (`cloister-keyvaultd`,
//! `cloister-executord`, `cloister-worker`), which this binary finds next to itself.

mod attest_cmd;
mod bench;
mod bench_cpu;
mod bench_sealed;
mod bench_secrets;
mod bench_signing;
mod cli;
mod client_cmds;
mod credentials;
mod credentials_cmd;
mod data_lock;
mod examples;
mod identity_cmd;
mod key_cmd;
mod local_run;
mod output;
mod policy_cmd;
mod private_file;
mod receipt_cmd;
mod restore_cmd;
mod roles;
mod secret_cmd;
mod serve;
mod status_cmd;
mod templates;
mod trust_cmd;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::FromArgMatches as _;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let matches = cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // Whether --token was typed (not taken from CLOISTER_TOKEN): `login` only takes that.
    let token_typed = matches.value_source("token") == Some(clap::parser::ValueSource::CommandLine);
    cloister_role::harden::private_files();
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
    let result = runtime.block_on(run(cli, token_typed));
    match result {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e, json);
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(cmd: &Command) {
    use cloister_role::logging::{LogFormat, init_with};
    match cmd {
        Command::Serve(a) => init_with("info", a.log.format()),
        Command::Gateway(a) => init_with("info", a.log.format()),
        _ => init_with("warn", LogFormat::from_env()),
    }
}

async fn run(cli: Cli, token_typed: bool) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    // Local function work needs no server and no credentials.
    match cli.command {
        Command::Fn(cli::FnCommand::Run(args)) => local_run::run(args, json).await,
        Command::Fn(cli::FnCommand::New {
            name,
            template,
            dir,
            force,
        }) => templates::write(&name, &template, &dir, force, json),
        command => run_server_command(cli::Cli { command, ..cli }, json, token_typed).await,
    }
}

async fn run_server_command(cli: Cli, json: bool, token_typed: bool) -> anyhow::Result<ExitCode> {
    // Commands that talk to no server (or name it themselves) read no credentials here.
    let conn = match &cli.command {
        Command::Serve(_)
        | Command::Gateway(_)
        | Command::Attest(_)
        | Command::Receipt(_)
        | Command::Login(_)
        | Command::Servers
        | Command::Completions { .. } => None,
        Command::Logout { url: Some(_) } => None,
        _ => Some(cli.connection()?),
    };
    let conn = || {
        conn.clone()
            .context("a server command without a connection")
    };
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Gateway(args) => roles::gateway(args).await,
        Command::Attest(cmd) => attest_cmd::run(cmd, json),
        Command::Receipt(cmd) => receipt_cmd::run(cmd, json),
        Command::Fn(cmd) => client_cmds::function(conn()?, cmd, json).await,
        Command::Token(cmd) => client_cmds::token(conn()?, cmd, json).await,
        Command::Bench(args) => bench::run(conn()?, args, json).await,
        Command::Keyvault(cmd) => secret_cmd::keyvault(conn()?, cmd, json).await,
        Command::Secret(cmd) => secret_cmd::secret(conn()?, cmd, json).await,
        Command::Key(cmd) => key_cmd::run(conn()?, cmd, json).await,
        Command::Audit(cmd) => secret_cmd::audit(conn()?, cmd, json).await,
        Command::Identity(cmd) => identity_cmd::run(conn()?, cmd, json).await,
        Command::Trust(cmd) => trust_cmd::run(&conn()?.url, cmd, json),
        Command::Login(args) => {
            // A token exported for scripts (CLOISTER_TOKEN) is not this server's by default:
            // login takes one only from --token, the prompt or stdin.
            let token = cli.token.filter(|_| token_typed);
            credentials_cmd::login(args, token, cli.identity, cli.profile, json).await
        }
        Command::Logout { url } => {
            let url = match url {
                Some(u) => u,
                None => conn()?.url,
            };
            credentials_cmd::logout(&url, json)
        }
        Command::Servers => credentials_cmd::list(json),
        Command::Status { trust } => status_cmd::run(conn()?, trust, json).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut cli::command(),
                "cloister",
                &mut std::io::stdout(),
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
