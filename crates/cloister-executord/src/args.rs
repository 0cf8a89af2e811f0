//! The flags of `cloister-executord`.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::bail;
use cloister_executor::config::{
    DEFAULT_SECRETS_TTL_SECS, DEFAULT_WORKER_UID_BASE, DEFAULT_WORKER_UID_COUNT,
    MAX_SECRETS_TTL_SECS,
};
use cloister_role::flags::{self, Next, RoleFlags};
use cloister_role::tee::Measurement;

/// Usage text.
pub const HELP: &str = "\
cloister-executord: Cloister's executor (trusted role; normally started by `cloister serve --dev`)

USAGE:
  cloister-executord FLAGS
  cloister-executord --version

  --listen ADDR            address of the executor RPC; keep it private to gateways
                           (or --listen-fd N, inherited)
  --credentials-file FILE  internal credentials, mode 0600 `name=value` lines (or --credentials-fd N)
  --threads N              async worker threads (default: half the CPUs)
  --data-dir DIR           directory holding the sim platform (default .cloister)
  --keyvault-addr HOST:PORT
                           keyvault's attested channel; without it, functions that declare
                           secrets fail with `secret_missing`
  --keyvault-measurement HEX
                           a keyvault build to trust (repeatable; required with
                           --keyvault-addr; `cloister attest measure` prints it). Part of this
                           executor's measurement.
  --worker PATH            the worker executable (default: cloister-worker next to this one).
                           Read once at start; part of this executor's measurement.
  --secrets-ttl-secs N     seconds a fetched secret may be served from memory (default 30,
                           at most 300)
  --worker-uid-base UID    first uid workers switch to when run as root (default 1879048192)
  --worker-uid-count N     how many uids (default 65536)

Every setting above except the sockets, credentials, threads and data directory is part of
the executor's measurement (its configuration digest).
";

/// What to do.
#[derive(Debug)]
pub enum Mode {
    /// Serve.
    Run(RunArgs),
    /// Print the version line.
    Version,
    /// Print usage.
    Help,
}

/// The executor's settings.
#[derive(Debug)]
pub struct RunArgs {
    /// Socket, credentials, threads, data directory.
    pub role: RoleFlags,
    /// `--keyvault-addr`.
    pub keyvault_addr: Option<String>,
    /// `--keyvault-measurement`.
    pub keyvaults: Vec<Measurement>,
    /// `--worker`.
    pub worker: Option<PathBuf>,
    /// `--secrets-ttl-secs`.
    pub secrets_ttl_secs: u64,
    /// `--worker-uid-base` .. + `--worker-uid-count`.
    pub worker_uids: std::ops::Range<u32>,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Mode> {
    let mut p = lexopt::Parser::from_args(args);
    let mut role = RoleFlags::default();
    let (mut keyvault_addr, mut keyvaults, mut worker) = (None, Vec::new(), None);
    let mut secrets_ttl_secs = DEFAULT_SECRETS_TTL_SECS;
    let (mut uid_base, mut uid_count) = (DEFAULT_WORKER_UID_BASE, DEFAULT_WORKER_UID_COUNT);
    while let Some(next) = flags::next(&mut p)? {
        match next {
            Next::Version => return Ok(Mode::Version),
            Next::Help => return Ok(Mode::Help),
            Next::Word(w) => bail!("unexpected argument {w:?}"),
            Next::Flag(name) => {
                if role.take(&name, &mut p)? {
                    continue;
                }
                match name.as_str() {
                    "keyvault-addr" => keyvault_addr = Some(flags::value(&mut p, &name)?),
                    "keyvault-measurement" => keyvaults.push(flags::measurement(&mut p, &name)?),
                    "worker" => worker = Some(flags::value(&mut p, &name)?),
                    "secrets-ttl-secs" => secrets_ttl_secs = flags::value(&mut p, &name)?,
                    "worker-uid-base" => uid_base = flags::value(&mut p, &name)?,
                    "worker-uid-count" => uid_count = flags::value(&mut p, &name)?,
                    _ => bail!("unknown flag --{name}"),
                }
            }
        }
    }
    role.check()?;
    if keyvault_addr.is_some() && keyvaults.is_empty() {
        bail!(
            "--keyvault-addr needs --keyvault-measurement: the keyvault build this executor \
             trusts (`cloister attest measure` prints it)"
        );
    }
    if secrets_ttl_secs > MAX_SECRETS_TTL_SECS {
        bail!("--secrets-ttl-secs is at most {MAX_SECRETS_TTL_SECS}");
    }
    let Some(worker_uids) = cloister_executor::config::worker_uid_range(uid_base, uid_count) else {
        bail!("--worker-uid-base must be above 0 and base + count must fit in 32 bits");
    };
    Ok(Mode::Run(RunArgs {
        role,
        keyvault_addr,
        keyvaults,
        worker,
        secrets_ttl_secs,
        worker_uids,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> anyhow::Result<Mode> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn flags_parse_and_an_untrusting_or_unsafe_setup_is_refused() {
        let m = hex::encode([9u8; 48]);
        let Mode::Run(r) = p(&[
            "--listen-fd",
            "3",
            "--keyvault-addr",
            "127.0.0.1:1",
            "--keyvault-measurement",
            &m,
            "--worker-uid-base",
            "5000",
            "--worker-uid-count",
            "10",
        ])
        .unwrap() else {
            panic!("run")
        };
        assert_eq!((r.keyvaults.len(), r.worker_uids), (1, 5000..5010));
        for (bad, says) in [
            (
                vec!["--listen-fd", "3", "--keyvault-addr", "127.0.0.1:1"],
                "--keyvault-measurement",
            ),
            (
                vec!["--listen-fd", "3", "--worker-uid-base", "0"],
                "above 0",
            ),
            (
                vec![
                    "--listen-fd",
                    "3",
                    "--worker-uid-base",
                    "4294967295",
                    "--worker-uid-count",
                    "2",
                ],
                "32 bits",
            ),
            (
                vec!["--keyvault-addr", "x", "--keyvault-measurement", &m],
                "--listen",
            ),
            (vec!["--listen-fd", "3", "extra"], "unexpected argument"),
            (
                vec!["--listen-fd", "3", "--secrets-ttl-secs", "301"],
                "at most 300",
            ),
        ] {
            let e = format!("{:#}", p(&bad).unwrap_err());
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
