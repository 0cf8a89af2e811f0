//! `cloister serve --dev`: one command that runs the whole platform on this machine.
//!
//! The parent binds every listening socket itself (so a busy port fails here, clearly, and
//! children are reachable the moment they start), passes them to one gateway and one executor
//! child process, and stops both on Ctrl-C or when either exits.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::RngExt as _;

use crate::cli::ServeArgs;
use crate::roles::{ADMIN_TOKEN_FILE, INTERNAL_TOKEN_ENV, stop_signal};

/// Descriptor at which a child finds its listening socket.
const CHILD_LISTEN_FD: RawFd = 3;

/// How long children get to drain before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

fn spawn_role(
    exe: &Path,
    role: &str,
    listener: RawFd,
    extra: &[String],
    token: &str,
) -> anyhow::Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.arg(role)
        .arg("--listen-fd")
        .arg(CHILD_LISTEN_FD.to_string())
        .args(extra)
        .env(INTERNAL_TOKEN_ENV, token);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if listener == CHILD_LISTEN_FD {
                let flags = libc::fcntl(listener, libc::F_GETFD);
                if flags < 0 || libc::fcntl(listener, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(listener, CHILD_LISTEN_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Children never outlive this supervisor.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("cannot start the {role} process"))
}

fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    let meta =
        std::fs::metadata(dir).with_context(|| format!("data directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
    }
    Ok(())
}

async fn wait_healthy(url: &str, children: &mut [(&str, Child)]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = cloister_client::Client::new(url, None)?;
    loop {
        if client.health().await.is_ok() {
            return Ok(());
        }
        for (role, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("the {role} process exited during start ({status})");
            }
        }
        if Instant::now() > deadline {
            bail!("the gateway did not become healthy within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn terminate(children: &mut [(&str, Child)]) {
    for (_, child) in children.iter() {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: plain signal to a child we own.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for (role, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    eprintln!(
                        "cloister: the {role} did not stop within {STOP_GRACE:?}; killing it"
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
}

/// Runs the platform until Ctrl-C.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if !args.dev {
        bail!(
            "only development mode is available in this build: run `cloister serve --dev` \
             (embedded SQLite, simulated TEE), or start `cloister gateway` and `cloister executor` yourself"
        );
    }
    prepare_data_dir(&args.data_dir)?;
    let token_path = args.data_dir.join(ADMIN_TOKEN_FILE);
    let token_existed = token_path.exists();
    let public = std::net::TcpListener::bind(args.listen).with_context(|| {
        format!(
            "cannot listen on {} (is another server running? use --listen)",
            args.listen
        )
    })?;
    let internal =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind the executor's port")?;
    let executor_url = format!("http://{}", internal.local_addr()?);
    let mut token_bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rng().fill(&mut token_bytes[..]);
    let internal_token = zeroize::Zeroizing::new(hex::encode(&token_bytes[..]));
    let exe = std::env::current_exe().context("cannot locate the cloister binary")?;

    let threads = vec![
        "--threads".to_owned(),
        args.threads
            .unwrap_or_else(crate::cli::default_threads)
            .to_string(),
    ];
    let executor = spawn_role(
        &exe,
        "executor",
        internal.as_raw_fd(),
        &threads,
        &internal_token,
    )?;
    let mut children = vec![("executor", executor)];
    let gateway_args = vec![
        "--data-dir".to_owned(),
        args.data_dir.display().to_string(),
        "--executor-url".to_owned(),
        executor_url,
        "--bootstrap-admin-token".to_owned(),
    ]
    .into_iter()
    .chain(threads)
    .collect::<Vec<_>>();
    match spawn_role(
        &exe,
        "gateway",
        public.as_raw_fd(),
        &gateway_args,
        &internal_token,
    ) {
        Ok(g) => children.push(("gateway", g)),
        Err(e) => {
            terminate(&mut children);
            return Err(e);
        }
    }
    drop(public);
    drop(internal);

    let url = format!("http://{}", args.listen);
    if let Err(e) = wait_healthy(&url, &mut children).await {
        terminate(&mut children);
        return Err(e);
    }
    let abs = std::fs::canonicalize(&token_path).unwrap_or(token_path.clone());
    eprintln!();
    eprintln!("  Cloister is running at {url}");
    eprintln!("  TEE: sim — SIMULATED, development only: nothing here is confidential");
    eprintln!("  data: {}", args.data_dir.display());
    if token_existed {
        eprintln!("  admin token: {}", abs.display());
    } else {
        eprintln!("  admin token: {} (created, mode 0600)", abs.display());
    }
    eprintln!("  Ctrl-C stops the platform.");
    eprintln!();

    let exited = tokio::select! {
        _ = stop_signal() => None,
        exited = watch(&mut children) => Some(exited),
    };
    terminate(&mut children);
    match exited {
        None => {
            eprintln!("cloister: stopped");
            Ok(ExitCode::SUCCESS)
        }
        Some(msg) => bail!("{msg}; stopped the platform"),
    }
}

/// Resolves when any child exits.
async fn watch(children: &mut [(&str, Child)]) -> String {
    loop {
        for (role, child) in children.iter_mut() {
            match child.try_wait() {
                Ok(Some(status)) => return format!("the {role} process exited ({status})"),
                Ok(None) => {}
                Err(e) => return format!("cannot watch the {role} process: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
