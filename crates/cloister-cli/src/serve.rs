//! `cloister serve --dev`: one command that runs the whole platform on this machine.
//!
//! The parent finds the trusted executables (`cloister-keyvaultd`, `cloister-executord`,
//! `cloister-worker`) next to itself, checks their version and measures them, creates the sim
//! platform identity, binds every listening socket itself (so a busy port fails here, clearly,
//! and children are reachable the moment they start), passes them to one keyvault, one
//! executor and one gateway child process, restarts keyvault if it crashes (it unseals
//! itself; executors reconnect), and stops everything on Ctrl-C or when another child exits.
//!
//! After a rebuild that changed a trusted executable it carries the platform over — a
//! development-only convenience, said loudly: the dev admin signs keyvault's re-seal (with
//! the recovery key kept in the data directory) and the executor policy update.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use cloister_role::credentials::{Credentials, GATEWAY_CREDENTIALS_FILE};
use cloister_role::files::RECOVERY_KEY_FILE;
use cloister_role::listen::stop_signal;
use cloister_role::trusted::{Measured, TrustedBinaries};

use crate::cli::ServeArgs;
use crate::roles::ADMIN_TOKEN_FILE;

/// Descriptor at which a child finds its listening socket.
const CHILD_LISTEN_FD: RawFd = 3;

/// keyvault is restarted at most this many times within [`KEYVAULT_RESTART_WINDOW`].
const KEYVAULT_MAX_RESTARTS: usize = 5;
/// Window of the keyvault crash-loop guard.
const KEYVAULT_RESTART_WINDOW: Duration = Duration::from_secs(60);

/// How long children get to drain before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Spawns `exe <args...> --listen-fd 3 [extra]` with `listeners[i]` at descriptor 3 + i.
/// The log format the roles this process starts write in (set once by `run`).
static CHILD_LOG_FORMAT: std::sync::OnceLock<cloister_role::logging::LogFormat> =
    std::sync::OnceLock::new();

fn spawn_role(
    exe: &Path,
    (name, role): (&str, &[&str]),
    listeners: &[RawFd],
    extra: &[String],
    credentials: Option<&Credentials>,
) -> anyhow::Result<Child> {
    let mut cmd = Command::new(exe);
    // A database URL (it may hold a password) reaches a role only through its credentials.
    cmd.env_remove("CLOISTER_DATABASE_URL");
    if let Some(f) = CHILD_LOG_FORMAT.get() {
        cmd.env(cloister_role::logging::LOG_FORMAT_ENV, f.as_str());
    }
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
        .with_context(|| format!("cannot start the {name} process ({})", exe.display()));
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

/// What `serve --dev` remembers of the platform it last ran (`dev-platform.json`): only
/// to carry it across a rebuild. Nothing here is trusted: a wrong value makes keyvault
/// refuse the re-seal, nothing more.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct DevState {
    /// keyvault's instance key (hex): what signed requests name as their platform.
    instance: String,
    /// keyvault measurement of that run (hex).
    keyvault: String,
    /// Executor measurement of that run (hex).
    executor: String,
}

/// Removes a file when dropped.
struct RemoveOnDrop(Option<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// File of [`DevState`] in the data directory.
const DEV_STATE_FILE: &str = "dev-platform.json";
/// The approval handed to keyvault for a development re-seal.
const RESEAL_APPROVAL_FILE: &str = "keyvault-reseal.approval";

fn load_dev_state(dir: &Path) -> Option<DevState> {
    serde_json::from_slice(&std::fs::read(dir.join(DEV_STATE_FILE)).ok()?).ok()
}

fn dev_banner(lines: &[String]) {
    eprintln!();
    eprintln!("  ┌─ DEVELOPMENT ONLY ─────────────────────────────────────────────────────");
    for l in lines {
        eprintln!("  │ {l}");
    }
    eprintln!("  │ Production never does this: there an admin approves a new build");
    eprintln!("  │ explicitly (`cloister keyvault migrate`, `cloister keyvault policy set`).");
    eprintln!("  └────────────────────────────────────────────────────────────────────────");
    eprintln!();
}

/// When keyvault's root is sealed to another keyvault build than the one about to start,
/// the dev admin signs a re-seal approval for keyvault (which also needs the recovery key
/// kept in the data directory). Returns the approval file to pass, if one is needed.
async fn approve_keyvault_reseal(
    data_dir: &Path,
    admin_identity: &Path,
    measured: &Measured,
    sealed_to: Option<&str>,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(sealed_to) = sealed_to else {
        return Ok(None);
    };
    let to = hex::encode(measured.keyvault);
    if sealed_to == to {
        return Ok(None);
    }
    let manual = format!(
        "run `cloister keyvault migrate --data-dir {}` with the recovery key printed at          initialisation",
        data_dir.display()
    );
    let recovery = data_dir.join(RECOVERY_KEY_FILE);
    if !recovery.exists() {
        bail!(
            "keyvault's state is sealed to another keyvault build ({}), and {} is missing, so              the development platform cannot carry it over by itself: {manual}",
            sealed_to,
            recovery.display()
        );
    }
    let Some(state) = load_dev_state(data_dir) else {
        bail!(
            "keyvault's state is sealed to another keyvault build ({}), and {} (written by              the last `serve --dev`) is missing: {manual}",
            sealed_to,
            data_dir.join(DEV_STATE_FILE).display()
        );
    };
    let admin = crate::identity_cmd::load_file(admin_identity)?;
    let body = cloister_authority::ops::KeyvaultReseal {
        from: sealed_to.to_owned(),
        to: to.clone(),
    };
    let signed = cloister_authority::sign(
        &admin,
        &body,
        &cloister_authority::SignOptions::for_platform(&state.instance),
    )?;
    let path = data_dir.join(RESEAL_APPROVAL_FILE);
    std::fs::write(&path, signed).with_context(|| format!("cannot write {}", path.display()))?;
    dev_banner(&[
        "keyvault was rebuilt: its measurement changed".to_owned(),
        format!("  from {}", sealed_to),
        format!("  to   {to}"),
        "The dev admin identity signed an approval; keyvault re-seals its root".to_owned(),
        format!("to the new build with the recovery key in {RECOVERY_KEY_FILE}."),
    ]);
    Ok(Some(path))
}

/// After a rebuild, keyvault's executor policy lists the previous executor build, so this
/// one would get no secrets. The policy is a registry entry only an admin changes: the dev
/// admin identity signs the change, visibly (audited as that identity's `policy.set`).
async fn approve_executor(
    url: &str,
    token_path: &Path,
    admin_identity: &Path,
    instance: &str,
    executor: &[u8; 48],
) -> anyhow::Result<()> {
    let m = hex::encode(executor);
    let token = std::fs::read_to_string(token_path)?.trim().to_owned();
    let admin = std::sync::Arc::new(crate::identity_cmd::load_file(admin_identity)?);
    let mut c = cloister_client::Client::new(url, Some(token))?
        .with_identity(admin, Some(instance.to_owned()));
    let reg = c.registry().await?;
    let Some(policy) = reg.executor_policy else {
        bail!("keyvault reports no executor policy");
    };
    if policy.measurements.contains(&m) {
        return Ok(());
    }
    let version = policy.version + 1;
    c.change_registry(&cloister_authority::ops::RegistryChange::ExecutorPolicy {
        version,
        policy: cloister_role::tee::sim_policy_yaml(&[*executor]),
    })
    .await?;
    dev_banner(&[
        "the executor was rebuilt: keyvault's executor policy listed".to_owned(),
        format!("  {}", policy.measurements.join(", ")),
        "The dev admin identity replaced it with this build's executor".to_owned(),
        format!("  {m} (policy version {version})"),
    ]);
    Ok(())
}

/// keyvault's instance key, from its attestation bundle checked against this platform's
/// root and the keyvault build this launcher started.
async fn keyvault_instance(url: &str, root: &str, keyvault: &[u8; 48]) -> anyhow::Result<String> {
    let mut c = cloister_client::Client::new(url, None)?;
    let bundle = c.attestation().await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let kv = cloister_client::attestation::verify_bundle(&bundle, root, keyvault, 60, now)
        .context("keyvault's attestation does not check out")?;
    Ok(kv.audit_key.to_string())
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
    let _ = CHILD_LOG_FORMAT.set(args.log.format());
    if !args.dev {
        bail!(
            "only development mode is available in this build: run `cloister serve --dev` \
             (embedded SQLite, simulated TEE), or start `cloister-keyvaultd`, \
             `cloister-executord` and `cloister gateway` yourself"
        );
    }
    let worker_uids = args.workers.range()?;
    let bins = TrustedBinaries::locate(args.trusted_dir.as_deref())?;
    bins.check_versions()?;
    let measured = bins.measure(
        cloister_executor::config::DEFAULT_SECRETS_TTL_SECS,
        worker_uids,
    )?;
    prepare_data_dir(&args.data_dir)?;
    // Held until `serve` ends: one platform per data directory.
    let _data_lock = crate::data_lock::acquire(&args.data_dir, "serve", "starting another")?;
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
    let (platform, platform_created) = cloister_role::tee::platform(&args.data_dir)?;
    // One credential per role pair; the gateway's in a 0600 file, the others by pipe. A
    // PostgreSQL URL (it may hold a password) travels the same way, one schema per role.
    let mut creds = Credentials::generate(&["executor", "keyvault"]);
    let databases = role_databases(
        args.database_url
            .as_ref()
            .map(cloister_db::DatabaseUrl::expose),
        &args.data_dir,
    )?;
    if let Some((gateway_url, keyvault_url)) = &databases.urls {
        creds.insert("database-gateway", gateway_url);
        creds.insert("database-keyvault", keyvault_url);
    }
    let gateway_creds_path = args.data_dir.join(GATEWAY_CREDENTIALS_FILE);
    creds
        .pick(&[
            ("executor", "executor"),
            ("keyvault", "keyvault"),
            ("database-gateway", crate::roles::DATABASE_CREDENTIAL),
        ])
        .write_file(&gateway_creds_path)?;
    let executor_creds = creds.pick(&[("executor", "gateway")]);
    let keyvault_creds = creds.pick(&[
        ("keyvault", "gateway"),
        ("database-keyvault", crate::roles::DATABASE_CREDENTIAL),
    ]);
    let exe = std::env::current_exe().context("cannot locate the cloister binary")?;
    let kv_hex = hex::encode(measured.keyvault);

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
    // Development keeps the recovery key in a 0600 file in the data directory (never in a
    // log), so a rebuilt keyvault can be carried over without a human typing it in.
    let recovery_file = args.data_dir.join(RECOVERY_KEY_FILE);
    let sealed = sealed_to(&databases.keyvault).await?;
    let reseal = approve_keyvault_reseal(
        &args.data_dir,
        &admin_identity,
        &measured,
        sealed.as_deref(),
    )
    .await?;
    // The approval file goes when it has served, or when this start fails.
    let approval_file = RemoveOnDrop(reseal.clone());
    if sealed.is_none() && recovery_file.exists() {
        // A recovery key left from a platform whose database is gone: keep it, aside.
        let aside = args.data_dir.join(format!(
            "{RECOVERY_KEY_FILE}.{}.old",
            cloister_authority::request::unix_now()
        ));
        std::fs::rename(&recovery_file, &aside)
            .with_context(|| format!("cannot move {} aside", recovery_file.display()))?;
        eprintln!(
            "cloister: the database is new; the old recovery key was moved to {}",
            aside.display()
        );
    }
    let mut kv_extra = vec![
        "--recovery-key-file".to_owned(),
        recovery_file.display().to_string(),
        "--bootstrap-executor-measurement".to_owned(),
        hex::encode(measured.executor),
    ];
    if let Some(approval) = &reseal {
        kv_extra.push("--dev-reseal-approval".to_owned());
        kv_extra.push(approval.display().to_string());
    }
    let mut kv_args: Vec<String> = [
        "--channel-listen-fd",
        "4",
        "--data-dir",
        &data_dir,
        "--bootstrap-admin",
        &admin_hex,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(kv_extra)
    .chain(threads.iter().cloned())
    .collect();
    let keyvault = spawn_role(
        &bins.keyvault,
        ("keyvault", &["run"]),
        &[kv_rpc.as_raw_fd(), kv_channel.as_raw_fd()],
        &kv_args,
        Some(&keyvault_creds),
    )?;
    let mut children = vec![("keyvault", keyvault)];
    let worker = bins.worker.display().to_string();
    let ex_args: Vec<String> = [
        "--data-dir",
        &data_dir,
        "--keyvault-addr",
        &keyvault_addr,
        "--keyvault-measurement",
        &kv_hex,
        "--worker",
        &worker,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(threads.iter().cloned())
    .chain(args.workers.to_args())
    .collect();
    match spawn_role(
        &bins.executor,
        ("executor", &[]),
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
        ("gateway", &["gateway"]),
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
    let instance =
        match keyvault_instance(&url, &platform.fingerprint_hex(), &measured.keyvault).await {
            Ok(i) => i,
            Err(e) => {
                terminate(&mut children);
                return Err(e);
            }
        };
    // Re-sealed (keyvault attested with the new measurement): a restart needs no approval.
    drop(approval_file);
    if let Some(i) = kv_args.iter().position(|a| a == "--dev-reseal-approval") {
        kv_args.drain(i..i + 2);
    }
    if let Err(e) = approve_executor(
        &url,
        &token_path,
        &admin_identity,
        &instance,
        &measured.executor,
    )
    .await
    {
        eprintln!("WARNING: could not add this build's executor to keyvault's policy: {e:#}");
    }
    let state = DevState {
        instance,
        keyvault: kv_hex.clone(),
        executor: hex::encode(measured.executor),
    };
    if let Err(e) = serde_json::to_vec_pretty(&state)
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(std::fs::write(args.data_dir.join(DEV_STATE_FILE), b)?))
    {
        eprintln!("WARNING: cannot record {DEV_STATE_FILE}: {e:#}");
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
    if databases.urls.is_some() {
        eprintln!("  keyvault store: {}", databases.keyvault);
    }
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
    eprintln!(
        "  trusted binaries: {} (keyvault {}…, executor {}…)",
        bins.keyvault
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        &kv_hex[..16],
        &state.executor[..16]
    );
    if recovery_file.exists() {
        eprintln!(
            "  recovery key: {} (mode 0600; development only: it and the database together \
             yield every secret, and it lets a rebuilt keyvault take over automatically)",
            recovery_file.display()
        );
    }
    match record_dev_credentials(
        &args.listen,
        &abs,
        &admin_identity,
        platform_created,
        &platform.fingerprint_hex(),
    ) {
        Ok(lines) => {
            for l in lines {
                eprintln!("  {l}");
            }
        }
        Err(e) => eprintln!("WARNING: cannot record the dev credentials: {e:#}"),
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
            &bins.keyvault,
            ("keyvault", &["run"]),
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

/// Where each role's store is for this start.
struct RoleDatabases {
    /// keyvault's store (read here to learn what its root is sealed to).
    keyvault: cloister_db::Location,
    /// With `--database-url`: the gateway's and keyvault's URLs (schemas apart).
    urls: Option<(String, String)>,
}

/// The stores of a dev platform: SQLite files in the data directory, or one PostgreSQL
/// database with a schema per role.
fn role_databases(url: Option<&str>, data_dir: &Path) -> anyhow::Result<RoleDatabases> {
    let Some(url) = url else {
        return Ok(RoleDatabases {
            keyvault: cloister_role::files::role_database(
                data_dir,
                cloister_role::files::KEYVAULT_DATABASE_FILE,
                None,
            )?,
            urls: None,
        });
    };
    match url.parse::<cloister_db::Location>()? {
        cloister_db::Location::Postgres(_) => {}
        _ => bail!(
            "--database-url takes a postgres:// URL; the embedded SQLite files live in --data-dir"
        ),
    }
    let gateway = cloister_db::role_url(url, "gateway")?;
    let keyvault = cloister_db::role_url(url, "keyvault")?;
    Ok(RoleDatabases {
        keyvault: keyvault.parse()?,
        urls: Some((gateway, keyvault)),
    })
}

/// The measurement keyvault's root is sealed to (hex), or `None` while keyvault has not
/// initialised it.
async fn sealed_to(location: &cloister_db::Location) -> anyhow::Result<Option<String>> {
    if let cloister_db::Location::Sqlite(path) = location
        && !path.exists()
    {
        return Ok(None);
    }
    let store = cloister_vault_store::open(location)
        .await
        .with_context(|| format!("cannot open keyvault's store at {location}"))?;
    Ok(store.vault_root().await?.map(|r| r.measurement))
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

/// Records this platform's admin token file and identity as the credentials for its URL (so
/// CLI commands from any directory use them), and, when the platform root was just created,
/// replaces this machine's pins of an earlier platform at that URL. Returns what to print.
fn record_dev_credentials(
    listen: &std::net::SocketAddr,
    token_file: &Path,
    identity: &Path,
    platform_created: bool,
    root: &str,
) -> anyhow::Result<Vec<String>> {
    use crate::credentials::{ServerCredentials, normalize_url};
    let mut urls = vec![normalize_url(&format!("http://{listen}"))];
    if listen.ip().is_unspecified() {
        urls.push(format!("http://127.0.0.1:{}", listen.port()));
    }
    let identity = std::fs::canonicalize(identity).unwrap_or_else(|_| identity.to_owned());
    let file = crate::credentials::update(|c| {
        for u in &urls {
            c.servers.insert(
                u.clone(),
                ServerCredentials {
                    token: None,
                    token_file: Some(token_file.to_owned()),
                    identity: Some(identity.clone()),
                },
            );
        }
    })?;
    let mut lines = vec![format!(
        "credentials: recorded for {} in {} (commands from any directory use them)",
        urls.join(" and "),
        file.display()
    )];
    if platform_created {
        for u in &urls {
            if crate::trust_cmd::repin_new_platform(u, root)? {
                lines.push(format!(
                    "pins: this machine trusted another platform at {u} before; its pins now \
                     name this platform's root"
                ));
            }
        }
    }
    Ok(lines)
}
