//! The few flags of a trusted binary, parsed with `lexopt` (no CLI framework in the trusted
//! code): the ones every server role shares, and helpers for the rest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, bail};
use lexopt::Parser;

use crate::credentials::Credentials;

/// Default data directory of every role (the CLI's default too).
pub const DEFAULT_DATA_DIR: &str = ".cloister";

/// The next value of `--flag`, parsed as `T`.
pub fn value<T>(p: &mut Parser, flag: &str) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let raw = p
        .value()
        .with_context(|| format!("--{flag} needs a value"))?;
    let text = raw
        .into_string()
        .map_err(|_| anyhow::anyhow!("--{flag}: the value is not UTF-8"))?;
    text.parse::<T>()
        .map_err(|e| anyhow::anyhow!("--{flag} {text:?}: {e}"))
}

/// A 48-byte measurement given as 96 hex digits.
pub fn measurement(p: &mut Parser, flag: &str) -> anyhow::Result<crate::tee::Measurement> {
    let text: String = value(p, flag)?;
    crate::tee::parse_measurement(&text).with_context(|| format!("--{flag}"))
}

/// What the next argument is: a long flag (by name), `--version`/`-V`, `--help`/`-h`, or a
/// positional word.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// `--name` (its value, if any, is read with [`value`]).
    Flag(String),
    /// A positional argument.
    Word(String),
    /// `--version` or `-V`.
    Version,
    /// `--help` or `-h`.
    Help,
}

/// Reads the next argument, or `None` at the end.
pub fn next(p: &mut Parser) -> anyhow::Result<Option<Next>> {
    use lexopt::Arg;
    Ok(match p.next()? {
        None => None,
        Some(Arg::Long("version")) | Some(Arg::Short('V')) => Some(Next::Version),
        Some(Arg::Long("help")) | Some(Arg::Short('h')) => Some(Next::Help),
        Some(Arg::Long(name)) => Some(Next::Flag(name.to_owned())),
        Some(Arg::Short(c)) => bail!("unknown flag -{c} (see --help)"),
        Some(Arg::Value(v)) => Some(Next::Word(
            v.into_string()
                .map_err(|_| anyhow::anyhow!("an argument is not UTF-8"))?,
        )),
    })
}

/// The flags every server role shares: its socket, credentials, threads and data directory.
#[derive(Debug, Clone)]
pub struct RoleFlags {
    /// `--listen ADDR`.
    pub listen: Option<SocketAddr>,
    /// `--listen-fd N` (inherited from `serve`).
    pub listen_fd: Option<i32>,
    /// `--credentials-file FILE` (mode 0600).
    pub credentials_file: Option<PathBuf>,
    /// `--credentials-fd N` (a pipe from `serve`).
    pub credentials_fd: Option<i32>,
    /// `--threads N`.
    pub threads: Option<usize>,
    /// `--data-dir DIR`.
    pub data_dir: PathBuf,
}

impl Default for RoleFlags {
    fn default() -> Self {
        Self {
            listen: None,
            listen_fd: None,
            credentials_file: None,
            credentials_fd: None,
            threads: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
        }
    }
}

/// Help text of the shared flags.
pub const ROLE_FLAGS_HELP: &str = "\
  --listen ADDR            address of the internal RPC (or --listen-fd N, inherited)
  --credentials-file FILE  internal credentials, mode 0600 `name=value` lines
                           (or --credentials-fd N, a pipe)
  --threads N              async worker threads (default: half the CPUs)
  --data-dir DIR           data directory (default .cloister)
";

impl RoleFlags {
    /// Takes `--name` if it is a shared flag (`Ok(true)`), reading its value from `p`.
    pub fn take(&mut self, name: &str, p: &mut Parser) -> anyhow::Result<bool> {
        match name {
            "listen" => self.listen = Some(value(p, name)?),
            "listen-fd" => self.listen_fd = Some(value(p, name)?),
            "credentials-file" => self.credentials_file = Some(value(p, name)?),
            "credentials-fd" => self.credentials_fd = Some(value(p, name)?),
            "threads" => self.threads = Some(value(p, name)?),
            "data-dir" => self.data_dir = value(p, name)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the combination (exactly one socket source, at most one credentials source).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.listen.is_some() == self.listen_fd.is_some() {
            bail!("exactly one of --listen and --listen-fd is required");
        }
        if self.credentials_file.is_some() && self.credentials_fd.is_some() {
            bail!("--credentials-file and --credentials-fd exclude each other");
        }
        Ok(())
    }

    /// The role's internal credentials.
    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        crate::credentials::load(self.credentials_fd, self.credentials_file.as_deref())
    }

    /// The role's listening socket.
    pub async fn listener(&self) -> anyhow::Result<tokio::net::TcpListener> {
        crate::listen::listen_on(self.listen, self.listen_fd).await
    }

    /// Async worker threads.
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(crate::listen::default_threads)
            .max(1)
    }
}

/// Turns a parse error into the process's exit: the message and a pointer to `--help`.
pub fn usage_error(bin: &str, e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("{bin}: {e:#}\nTry `{bin} --help`.");
    std::process::ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<RoleFlags> {
        let mut p = Parser::from_args(args.iter().copied());
        let mut f = RoleFlags::default();
        while let Some(n) = next(&mut p)? {
            match n {
                Next::Flag(name) => {
                    if !f.take(&name, &mut p)? {
                        bail!("unknown flag --{name}");
                    }
                }
                other => bail!("unexpected {other:?}"),
            }
        }
        f.check()?;
        Ok(f)
    }

    #[test]
    fn shared_flags_parse_and_bad_ones_are_refused_clearly() {
        let f = parse(&["--listen-fd", "3", "--threads=2", "--data-dir", "/d"]).unwrap();
        assert_eq!((f.listen_fd, f.threads()), (Some(3), 2));
        assert_eq!(f.data_dir, PathBuf::from("/d"));
        let e = parse(&["--listen", "nope"]).unwrap_err().to_string();
        assert!(e.contains("--listen \"nope\""), "{e}");
        let e = parse(&["--listen-fd", "3", "--listen", "127.0.0.1:1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one"), "{e}");
        assert!(
            parse(&["--bogus"])
                .unwrap_err()
                .to_string()
                .contains("--bogus")
        );
        assert!(parse(&["--threads"]).is_err());
    }
}
