//! The flags of `cloister-keyvaultd`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use cloister_role::flags::{self, Next, RoleFlags};
use cloister_role::tee::Measurement;

/// Usage text.
pub const HELP: &str = "\
cloister-keyvaultd: Cloister's keyvault (trusted role; normally started by `cloister serve --dev`)

USAGE:
  cloister-keyvaultd [run] FLAGS
  cloister-keyvaultd migrate [--data-dir DIR] [--database-url URL] [--recovery-key-file FILE] [--json]
  cloister-keyvaultd restore-plan [--data-dir DIR]
  cloister-keyvaultd restore [--data-dir DIR] < SIGNED
  cloister-keyvaultd --version

run:
  --listen ADDR            address of the gateway's RPC (or --listen-fd N, inherited)
  --channel-listen ADDR    address of executors' attested channel (or --channel-listen-fd N)
  --credentials-file FILE  internal credentials, mode 0600 `name=value` lines (or --credentials-fd N)
  --threads N              async worker threads (default: half the CPUs)
  --data-dir DIR           database and sim platform (default .cloister)
  --database-url URL       keyvault's store: sqlite:PATH (default DIR/keyvault.db) or
                           postgres://USER@HOST:PORT/DB[?schema=NAME&sslmode=require]
  --bootstrap-admin HEX    first admin's Ed25519 public key (used only at initialisation)
  --bootstrap-executor-measurement HEX
                           executor measurement of the first executor policy (repeatable;
                           used only at initialisation; afterwards only an admin changes it)
  --recovery-key-file FILE where initialisation writes the recovery key (0600, never
                           overwritten); without it the key is shown on a terminal only
  --dev-reseal-approval FILE
                           DEVELOPMENT ONLY: when the root is sealed to another keyvault
                           build, re-seal it to this one with the recovery key in
                           --recovery-key-file, as the admin-signed approval in FILE allows

migrate: re-seal keyvault's root to this executable with the recovery key printed at
initialisation (read from --recovery-key-file or stdin); run it with the platform stopped.

restore-plan / restore: with a backup copied into place (platform stopped), print what an
admin signs to accept it (JSON), then apply the admin-signed request read from stdin.
`cloister keyvault restore` runs both.
";

/// What to do.
#[derive(Debug)]
pub enum Mode {
    /// Serve.
    Run(Box<RunArgs>),
    /// Re-seal the root to this executable.
    Migrate(MigrateArgs),
    /// Print what an admin signs to accept the database in this data directory.
    RestorePlan(PathBuf),
    /// Apply an admin-signed restore read from stdin.
    Restore(PathBuf),
    /// Print the version line.
    Version,
    /// Print usage.
    Help,
}

/// `run`.
#[derive(Debug, Default)]
pub struct RunArgs {
    /// Socket, credentials, threads, data directory.
    pub role: RoleFlags,
    /// `--channel-listen`.
    pub channel_listen: Option<SocketAddr>,
    /// `--channel-listen-fd`.
    pub channel_listen_fd: Option<i32>,
    /// `--bootstrap-admin`.
    pub bootstrap_admin: Option<String>,
    /// `--bootstrap-executor-measurement`.
    pub bootstrap_executors: Vec<Measurement>,
    /// `--recovery-key-file`.
    pub recovery_key_file: Option<PathBuf>,
    /// `--dev-reseal-approval`.
    pub dev_reseal_approval: Option<PathBuf>,
    /// `--database-url` (else `keyvault.db` in the data directory).
    pub database_url: Option<cloister_db::DatabaseUrl>,
}

/// `migrate`.
#[derive(Debug)]
pub struct MigrateArgs {
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--recovery-key-file` (else stdin).
    pub recovery_key_file: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
    /// `--database-url` (else `keyvault.db` in the data directory).
    pub database_url: Option<cloister_db::DatabaseUrl>,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Mode> {
    let mut p = lexopt::Parser::from_args(args);
    let mut run = RunArgs::default();
    let mut migrate = MigrateArgs {
        data_dir: PathBuf::from(flags::DEFAULT_DATA_DIR),
        recovery_key_file: None,
        json: false,
        database_url: None,
    };
    let mut sub: Option<String> = None;
    while let Some(next) = flags::next(&mut p)? {
        match next {
            Next::Version => return Ok(Mode::Version),
            Next::Help => return Ok(Mode::Help),
            Next::Word(w)
                if sub.is_none()
                    && ["run", "migrate", "restore-plan", "restore"].contains(&w.as_str()) =>
            {
                sub = Some(w)
            }
            Next::Word(w) => bail!("unexpected argument {w:?}"),
            Next::Flag(name) if matches!(sub.as_deref(), Some("restore-plan" | "restore")) => {
                match name.as_str() {
                    "data-dir" => migrate.data_dir = flags::value(&mut p, &name)?,
                    _ => bail!("unknown flag --{name} for {}", sub.as_deref().unwrap_or("")),
                }
            }
            Next::Flag(name) if sub.as_deref() == Some("migrate") => match name.as_str() {
                "data-dir" => migrate.data_dir = flags::value(&mut p, &name)?,
                "recovery-key-file" => {
                    migrate.recovery_key_file = Some(flags::value(&mut p, &name)?)
                }
                "json" => migrate.json = true,
                "database-url" => migrate.database_url = Some(flags::value(&mut p, &name)?),
                _ => bail!("unknown flag --{name} for migrate"),
            },
            Next::Flag(name) => {
                if run.role.take(&name, &mut p)? {
                    continue;
                }
                match name.as_str() {
                    "channel-listen" => run.channel_listen = Some(flags::value(&mut p, &name)?),
                    "channel-listen-fd" => {
                        run.channel_listen_fd = Some(flags::value(&mut p, &name)?)
                    }
                    "bootstrap-admin" => run.bootstrap_admin = Some(flags::value(&mut p, &name)?),
                    "bootstrap-executor-measurement" => run
                        .bootstrap_executors
                        .push(flags::measurement(&mut p, &name)?),
                    "recovery-key-file" => {
                        run.recovery_key_file = Some(flags::value(&mut p, &name)?)
                    }
                    "dev-reseal-approval" => {
                        run.dev_reseal_approval = Some(flags::value(&mut p, &name)?)
                    }
                    "database-url" => {
                        let v: String = flags::value(&mut p, &name)?;
                        run.database_url = Some(v.parse()?);
                    }
                    _ => bail!("unknown flag --{name}"),
                }
            }
        }
    }
    match sub.as_deref() {
        Some("migrate") => return Ok(Mode::Migrate(migrate)),
        Some("restore-plan") => return Ok(Mode::RestorePlan(migrate.data_dir)),
        Some("restore") => return Ok(Mode::Restore(migrate.data_dir)),
        _ => {}
    }
    run.role.check()?;
    if run.channel_listen.is_some() == run.channel_listen_fd.is_some() {
        bail!("exactly one of --channel-listen and --channel-listen-fd is required");
    }
    if run.dev_reseal_approval.is_some() && run.recovery_key_file.is_none() {
        bail!(
            "--dev-reseal-approval needs --recovery-key-file (the recovery key it re-seals with)"
        );
    }
    Ok(Mode::Run(Box::new(run)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> anyhow::Result<Mode> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn run_and_migrate_parse_and_mistakes_are_named() {
        let m = [7u8; 48];
        let Mode::Run(r) = p(&[
            "--listen-fd",
            "3",
            "--channel-listen-fd",
            "4",
            "--bootstrap-executor-measurement",
            &hex::encode(m),
        ])
        .unwrap() else {
            panic!("run")
        };
        assert_eq!(r.bootstrap_executors, vec![m]);
        let Mode::Migrate(g) = p(&["migrate", "--data-dir", "/d", "--json"]).unwrap() else {
            panic!("migrate")
        };
        assert!(g.json && g.data_dir == std::path::Path::new("/d"));
        assert!(matches!(p(&["--version"]).unwrap(), Mode::Version));
        assert!(matches!(
            p(&["restore-plan", "--data-dir", "/d"]).unwrap(),
            Mode::RestorePlan(d) if d == std::path::Path::new("/d")
        ));
        for (bad, says) in [
            (vec!["--listen-fd", "3"], "--channel-listen"),
            (
                vec!["--listen-fd", "3", "--channel-listen-fd", "4", "--nope"],
                "--nope",
            ),
            (
                vec![
                    "--listen-fd",
                    "3",
                    "--channel-listen-fd",
                    "4",
                    "--dev-reseal-approval",
                    "a",
                ],
                "--recovery-key-file",
            ),
            (
                vec!["--bootstrap-executor-measurement", "abc"],
                "hex digits",
            ),
            (vec!["migrate", "--listen", "x"], "for migrate"),
            (vec!["restore", "--json"], "for restore"),
        ] {
            let e = format!("{:#}", p(&bad).unwrap_err());
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
