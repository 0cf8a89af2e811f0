//! `cloister serve --dev`: one command that runs the whole platform on this machine.
//!
//! The parent creates the sim platform identity, binds every listening socket itself (so a busy
//! port fails here, clearly, and children are reachable the moment they start), passes them to
//! one keyvault, one executor and one gateway child process, restarts keyvault if it crashes
//! (it unseals itself; executors reconnect), and stops everything on Ctrl-C or when another
//! child exits.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cli::ServeArgs;
use crate::credentials::{Credentials, GATEWAY_CREDENTIALS_FILE};
use crate::roles::{ADMIN_TOKEN_FILE, stop_signal};

/// File the recovery key is written to when `serve --dev` runs without a terminal.
pub const RECOVERY_KEY_FILE: &str = "recovery.key";

/// Descriptor at which a child finds its listening socket.
const CHILD_LISTEN_FD: RawFd = 3;

/// keyvault is restarted at most this many times within [`KEYVAULT_RESTART_WINDOW`].
const KEYVAULT_MAX_RESTARTS: usize = 5;
/// Window of the keyvault crash-loop guard.
const KEYVAULT_RESTART_WINDOW: Duration = Duration::from_secs(60);

/// How long children get to drain before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Spawns `exe <role...> --listen-fd 3 [extra]` with `listeners[i]` at descriptor 3 + i.
fn spawn_role(
    exe: &Path,
    role: &[&str],
    listeners: &[RawFd],
    extra: &[String],
    credentials: Option<&Credentials>,
) -> anyhow::Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.args(role)
        .arg("--listen-fd")
        .arg(CHILD_LISTEN_FD.to_string())
        .args(extra);
    let mut fds: Vec<RawFd> = listeners.to_vec();
    // The credentials travel in a pipe the child reads once: never in the environment, on
    // the command line or on disk.
    let pipe = credentials.map(Credentials::to_pipe).transpose()?;
    if let Some(p) = &pipe {
        use std::os::fd::AsRawFd;
        cmd.arg("--credentials-fd")
            .arg((CHILD_LISTEN_FD + fds.len() as RawFd).to_string());
        fds.push(p.as_raw_fd());
    }
    // SAFETY: only async-signal-safe calls (fcntl, dup2, prctl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Move every source out of the target range first, so no dup2 clobbers a source.
            let mut high = [0 as RawFd; 8];
            for (i, fd) in fds.iter().enumerate().take(high.len()) {
                let h = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 64);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high[i] = h;
            }
            for (i, h) in high.iter().enumerate().take(fds.len().min(high.len())) {
                let target = CHILD_LISTEN_FD + i as RawFd;
                // dup2 clears FD_CLOEXEC on the new descriptor.
                if libc::dup2(*h, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Children never outlive this supervisor.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start the {} process", role.join(" ")));
    drop(pipe);
    child
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

/// Development convenience after an upgrade (`keyvault migrate`): keyvault's executor policy
/// still lists the previous build's executor, so this build's would get no secrets. The
/// policy is a registry entry only an admin changes, so the dev admin identity signs the
/// change, visibly (it is audited as that identity's `policy.set`).
async fn allow_this_executor(
    url: &str,
    token_path: &std::path::Path,
    admin_identity: &std::path::Path,
) -> anyhow::Result<()> {
    let m = crate::tee::measure_self(&["executor"])?[0];
    let token = std::fs::read_to_string(token_path)?.trim().to_owned();
    let admin = std::sync::Arc::new(crate::identity_cmd::load_file(admin_identity)?);
    let mut c = cloister_client::Client::new(url, Some(token))?.with_identity(admin, None);
    let reg = c.registry().await?;
    let Some(policy) = reg.executor_policy else {
        anyhow::bail!("keyvault reports no executor policy");
    };
    if policy.measurements.contains(&hex::encode(m)) {
        return Ok(());
    }
    let version = policy.version + 1;
    c.change_registry(&cloister_authority::ops::RegistryChange::ExecutorPolicy {
        version,
        policy: crate::tee::sim_policy_yaml(&[m]),
    })
    .await?;
    eprintln!(
        "NOTE: keyvault's executor policy listed another build ({}); the dev admin identity \
         replaced it with this build's executor (policy version {version})",
        policy.measurements.join(", ")
    );
    Ok(())
}

async fn wait_healthy(url: &str, children: &mut [(&str, Child)]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = cloister_client::Client::new(url, None)?;
    loop {
        // Healthy = the gateway answers and keyvault (behind it) serves its attestation.
        if client.health().await.is_ok() && client.attestation().await.is_ok() {
            return Ok(());
        }
        for (role, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("the {role} process exited during start ({status})");
            }
        }
        if Instant::now() > deadline {
            bail!("the platform did not become healthy within 60 s");
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
    args.workers.range()?;
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
    let kv_rpc =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind keyvault's RPC port")?;
    let kv_channel = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot bind keyvault's channel port")?;
    let keyvault_url = format!("http://{}", kv_rpc.local_addr()?);
    let keyvault_addr = kv_channel.local_addr()?.to_string();
    let (platform, platform_created) = crate::tee::platform(&args.data_dir)?;
    // One credential per role pair; the gateway's in a 0600 file, the others by pipe.
    let creds = Credentials::generate(&["executor", "keyvault"]);
    let gateway_creds_path = args.data_dir.join(GATEWAY_CREDENTIALS_FILE);
    creds.write_file(&gateway_creds_path)?;
    let executor_creds = creds.pick(&[("executor", "gateway")]);
    let keyvault_creds = creds.pick(&[("keyvault", "gateway")]);
    let exe = std::env::current_exe().context("cannot locate the cloister binary")?;

    let threads = vec![
        "--threads".to_owned(),
        args.threads
            .unwrap_or_else(crate::cli::default_threads)
            .to_string(),
    ];
    let data_dir = args.data_dir.display().to_string();
    let (admin_identity, admin_key, admin_created) =
        crate::identity_cmd::ensure_dev_admin(&args.data_dir)?;
    let admin_hex = admin_key.to_string();
    // The recovery key goes to the terminal, or (output redirected, as in CI) to a 0600 file
    // in the data directory, never into a log.
    let recovery_file = args.data_dir.join(RECOVERY_KEY_FILE);
    let recovery_args = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        vec![]
    } else {
        vec![
            "--recovery-key-file".to_owned(),
            recovery_file.display().to_string(),
        ]
    };
    let kv_args: Vec<String> = [
        "--channel-listen-fd",
        "4",
        "--data-dir",
        &data_dir,
        "--bootstrap-admin",
        &admin_hex,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(recovery_args)
    .chain(threads.iter().cloned())
    .collect();
    let keyvault = spawn_role(
        &exe,
        &["keyvault", "run"],
        &[kv_rpc.as_raw_fd(), kv_channel.as_raw_fd()],
        &kv_args,
        Some(&keyvault_creds),
    )?;
    let mut children = vec![("keyvault", keyvault)];
    let ex_args: Vec<String> = ["--data-dir", &data_dir, "--keyvault-addr", &keyvault_addr]
        .into_iter()
        .map(str::to_owned)
        .chain(threads.iter().cloned())
        .chain(args.workers.to_args())
        .collect();
    match spawn_role(
        &exe,
        &["executor"],
        &[internal.as_raw_fd()],
        &ex_args,
        Some(&executor_creds),
    ) {
        Ok(e) => children.push(("executor", e)),
        Err(e) => {
            terminate(&mut children);
            return Err(e);
        }
    }
    let gateway_args = vec![
        "--data-dir".to_owned(),
        data_dir.clone(),
        "--executor-url".to_owned(),
        executor_url,
        "--keyvault-url".to_owned(),
        keyvault_url,
        "--executor-sim-root".to_owned(),
        platform.fingerprint_hex(),
        "--bootstrap-admin-token".to_owned(),
        "--credentials-file".to_owned(),
        gateway_creds_path.display().to_string(),
    ]
    .into_iter()
    .chain(threads)
    .chain(args.edge.to_args())
    .collect::<Vec<_>>();
    match spawn_role(
        &exe,
        &["gateway"],
        &[public.as_raw_fd()],
        &gateway_args,
        None,
    ) {
        Ok(g) => children.push(("gateway", g)),
        Err(e) => {
            terminate(&mut children);
            return Err(e);
        }
    }
    drop(public);
    drop(internal);
    // keyvault's sockets stay open here so a crashed keyvault can be restarted on them.

    let url = format!("http://{}", args.listen);
    if let Err(e) = wait_healthy(&url, &mut children).await {
        terminate(&mut children);
        return Err(e);
    }
    if let Err(e) = allow_this_executor(&url, &token_path, &admin_identity).await {
        eprintln!("WARNING: could not add this build's executor to keyvault's policy: {e:#}");
    }
    let abs = std::fs::canonicalize(&token_path).unwrap_or(token_path.clone());
    eprintln!();
    eprintln!("  Cloister is running at {url}");
    eprintln!("  TEE: sim — SIMULATED, development only: nothing here is confidential");
    eprintln!(
        "  sim platform root: {}{}",
        platform.fingerprint_hex(),
        if platform_created { " (created)" } else { "" }
    );
    eprintln!(
        "    pin it in clients: export CLOISTER_SIM_ROOT={}",
        platform.fingerprint_hex()
    );
    eprintln!("  data: {}", args.data_dir.display());
    if token_existed {
        eprintln!("  admin token: {}", abs.display());
    } else {
        eprintln!("  admin token: {} (created, mode 0600)", abs.display());
    }
    eprintln!(
        "  admin identity: {}{}",
        std::fs::canonicalize(&admin_identity)
            .unwrap_or(admin_identity.clone())
            .display(),
        if admin_created {
            " (created, mode 0600; signs deploys and secret writes)"
        } else {
            ""
        }
    );
    if recovery_file.exists() {
        eprintln!(
            "  recovery key: {} (mode 0600; development only: move it offline, it and the \
             database together yield every secret)",
            recovery_file.display()
        );
    }
    eprintln!("  Ctrl-C stops the platform.");
    eprintln!();

    let stop = stop_signal();
    tokio::pin!(stop);
    let mut restarts: Vec<Instant> = Vec::new();
    let exited = loop {
        let (idx, msg) = tokio::select! {
            _ = &mut stop => break None,
            exited = watch(&mut children) => exited,
        };
        // keyvault holds no state outside the database: restart it (it unseals itself and
        // executors reconnect and re-attest). Anything else, or a crash loop, stops the platform.
        restarts.retain(|t| t.elapsed() < KEYVAULT_RESTART_WINDOW);
        let is_keyvault = children.get(idx).is_some_and(|(r, _)| *r == "keyvault");
        if !is_keyvault || restarts.len() >= KEYVAULT_MAX_RESTARTS {
            break Some(msg);
        }
        restarts.push(Instant::now());
        eprintln!("cloister: {msg}; restarting it");
        match spawn_role(
            &exe,
            &["keyvault", "run"],
            &[kv_rpc.as_raw_fd(), kv_channel.as_raw_fd()],
            &kv_args,
            Some(&keyvault_creds),
        ) {
            Ok(k) => children[idx] = ("keyvault", k),
            Err(e) => break Some(format!("{msg}; cannot restart it: {e:#}")),
        }
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

/// Resolves when any child exits: its index and what happened.
async fn watch(children: &mut [(&str, Child)]) -> (usize, String) {
    loop {
        for (i, (role, child)) in children.iter_mut().enumerate() {
            match child.try_wait() {
                Ok(Some(status)) => return (i, format!("the {role} process exited ({status})")),
                Ok(None) => {}
                Err(e) => return (i, format!("cannot watch the {role} process: {e}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
