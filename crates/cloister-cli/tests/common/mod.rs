//! Test harness: a real `cloister serve --dev` in a temporary directory on a free port.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cloister_client::Client;
use cloister_types::wire::{DeployRequest, FunctionInfo};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cloister");

/// Directory of the reference workloads.
pub fn workloads() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workloads")
}

/// Source of a reference workload.
pub fn workload(name: &str) -> String {
    std::fs::read_to_string(workloads().join(name)).unwrap()
}

/// A running platform; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Platform {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// The `cloister` executable serving (and run by [`Platform::cli`]).
    pub bin: PathBuf,
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Spawns `cloister serve --dev` with the given data dir and port.
pub fn spawn_serve(data: &Path, port: u16, log: &Path) -> Child {
    spawn_serve_with(data, port, log, &[])
}

/// Spawns `cloister serve --dev` with extra flags.
pub fn spawn_serve_with(data: &Path, port: u16, log: &Path, extra: &[&str]) -> Child {
    spawn_serve_bin(Path::new(BIN), data, port, log, extra)
}

/// Spawns `serve --dev` from the `cloister` executable at `bin` (its trusted executables are
/// the ones next to it).
pub fn spawn_serve_bin(bin: &Path, data: &Path, port: u16, log: &Path, extra: &[&str]) -> Child {
    let log_file = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--dev", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("RUST_LOG", "info")
        // The CLI config (and the credentials `serve --dev` records next to it) stay in the
        // test's directory, the one `Platform::cli` uses, never the user's.
        .env(
            "CLOISTER_CONFIG",
            data.parent().unwrap_or(data).join("cli-config.json"),
        )
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    // SAFETY: async-signal-safe call only.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

impl Platform {
    /// Starts a fresh platform and waits until it is healthy.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir).await
    }

    /// Starts a fresh platform with extra `serve` flags.
    pub async fn start_with(extra: &[&str]) -> Self {
        Self::start_in_with(tempfile::tempdir().unwrap(), extra).await
    }

    /// Starts a platform on an existing data directory.
    pub async fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_in_with(dir, &[]).await
    }

    /// Starts a platform on an existing data directory with extra `serve` flags.
    pub async fn start_in_with(dir: tempfile::TempDir, extra: &[&str]) -> Self {
        Self::start_from(dir, Path::new(BIN), extra).await
    }

    /// Starts a platform from the `cloister` executable at `bin` (and the trusted ones next
    /// to it) on an existing data directory.
    pub async fn start_from(dir: tempfile::TempDir, bin: &Path, extra: &[&str]) -> Self {
        let log = dir.path().join("serve.log");
        let data = dir.path().join("data");
        for _attempt in 0..3 {
            let port = free_port();
            let mut child = spawn_serve_bin(bin, &data, port, &log, extra);
            let url = format!("http://127.0.0.1:{port}");
            if wait_healthy(&url, &mut child).await {
                // `serve` prints its banner after its own health check: wait for it so tests
                // that read the log do not race it.
                let deadline = Instant::now() + Duration::from_secs(10);
                while !std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("Ctrl-C stops the platform")
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let token = std::fs::read_to_string(data.join("admin.token"))
                    .unwrap()
                    .trim()
                    .to_owned();
                return Self {
                    dir,
                    url,
                    token,
                    child: Some(child),
                    log,
                    bin: bin.to_path_buf(),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "platform did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The dev admin identity `serve --dev` created.
    pub fn admin_identity_path(&self) -> PathBuf {
        self.data().join("admin.identity")
    }

    /// The dev admin identity.
    pub fn admin_identity(&self) -> std::sync::Arc<cloister_authority::Identity> {
        std::sync::Arc::new(
            cloister_authority::Identity::load(&self.admin_identity_path()).unwrap(),
        )
    }

    /// A token of `role` the admin creates, acting for identity `identity` (an id) if given.
    pub async fn token(
        &self,
        role: cloister_types::Role,
        identity: Option<String>,
    ) -> cloister_types::wire::TokenCreated {
        self.admin()
            .create_token(&cloister_types::wire::TokenCreateRequest {
                role,
                label: None,
                identity,
                functions: vec![],
            })
            .await
            .unwrap()
    }

    /// An admin client that signs as the dev admin identity.
    pub fn admin(&self) -> Client {
        Client::new(&self.url, Some(self.token.clone()))
            .unwrap()
            .with_identity(self.admin_identity(), None)
    }

    /// A new identity granted `developer` by the dev admin.
    pub async fn developer_identity(
        &self,
        label: &str,
    ) -> std::sync::Arc<cloister_authority::Identity> {
        let id = cloister_authority::Identity::generate(label).unwrap();
        self.admin()
            .grant_identity(
                &id.public_key(),
                cloister_authority::ops::IdentityRole::Developer,
                label,
                None,
            )
            .await
            .unwrap();
        std::sync::Arc::new(id)
    }

    /// The measurement of the keyvault executable this platform runs (what clients expect).
    pub fn keyvault_measurement(&self) -> [u8; 48] {
        let m: serde_json::Value = serde_json::from_slice(
            &self
                .cli(&["--json", "attest", "measure", "--role", "keyvault"])
                .stdout,
        )
        .unwrap();
        let mut expected = [0u8; 48];
        hex::decode_to_slice(m["measurement"].as_str().unwrap(), &mut expected).unwrap();
        expected
    }

    /// keyvault's attestation bundle, fetched and verified against this platform's sim root
    /// and keyvault build (what a client that trusts this platform does first).
    pub async fn trusted_keyvault(&self) -> cloister_client::attestation::TrustedKeyvault {
        let bundle = self.admin().attestation().await.unwrap();
        cloister_client::attestation::verify_bundle(
            &bundle,
            &self.sim_root(),
            &self.keyvault_measurement(),
            300,
            time::OffsetDateTime::now_utc().unix_timestamp(),
        )
        .unwrap()
    }

    /// Waits until the executor holds fleet keys (fetched right after it attests to keyvault).
    pub async fn executor_holds_keys(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log().contains("holding fleet keys") {
            assert!(Instant::now() < deadline, "{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client with any token.
    pub fn client(&self, token: Option<&str>) -> Client {
        Client::new(&self.url, token.map(str::to_owned)).unwrap()
    }

    /// Deploys a reference workload under `name`.
    pub async fn deploy(
        &self,
        name: &str,
        file: &str,
        limits: Option<serde_json::Value>,
    ) -> FunctionInfo {
        let req = DeployRequest {
            limits: limits.map(|l| serde_json::from_value(l).unwrap()),
            ..DeployRequest::javascript(name, workload(file))
        };
        self.admin().deploy(&req).await.unwrap()
    }

    /// Runs the CLI against this platform (its trust-on-first-use pins go to a file in the
    /// test's directory, never to the user's config).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, b"")
    }

    /// Runs the CLI with `input` on stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        self.cli_env(args, input, &[])
    }

    /// Runs the CLI with `input` on stdin and `env` set over the defaults.
    pub fn cli_env(&self, args: &[&str], input: &[u8], env: &[(&str, &str)]) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.bin)
            .args(args)
            .env("CLOISTER_URL", &self.url)
            .env("CLOISTER_TOKEN", &self.token)
            .env("CLOISTER_CONFIG", self.dir.path().join("cli-config.json"))
            .env("CLOISTER_IDENTITY", self.admin_identity_path())
            .env_remove("CLOISTER_SIM_ROOT")
            .env_remove("CLOISTER_TRUSTED_DIR")
            .env_remove("RUST_LOG")
            .env_remove("CLOISTER_IDENTITY_PASSPHRASE")
            .env_remove("CLOISTER_IDENTITY_PASSPHRASE_FILE")
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    /// The sim root fingerprint `serve` printed.
    pub fn sim_root(&self) -> String {
        let log = self.log();
        let at = log
            .find("CLOISTER_SIM_ROOT=")
            .expect("serve prints the sim root")
            + 18;
        log[at..at + 64].to_owned()
    }

    /// Sends SIGTERM (as Ctrl-C would) and waits for exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve did not stop on SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

async fn wait_healthy(url: &str, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut c = Client::new(url, None).unwrap();
    while Instant::now() < deadline {
        if c.health().await.is_ok() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Asserts that an API call failed with `code` and HTTP `status`.
pub fn assert_api_error<T: std::fmt::Debug>(
    r: Result<T, cloister_client::ClientError>,
    code: &str,
    status: u16,
) -> cloister_types::ApiError {
    match r {
        Err(cloister_client::ClientError::Api { status: s, error }) => {
            assert_eq!(error.code.as_str(), code, "unexpected code: {error:?}");
            assert_eq!(s, status, "unexpected status for {code}");
            error
        }
        other => panic!("expected {code}, got {other:?}"),
    }
}

/// The role a platform process plays: `keyvault`, `executor` or `worker` for the trusted
/// executables (`cloister-keyvaultd` ...), else the `cloister` subcommand (`gateway`).
pub fn role_of(cmdline: &[u8]) -> String {
    let mut args = cmdline.split(|&b| b == 0).map(String::from_utf8_lossy);
    let exe = args.next().unwrap_or_default();
    let base = exe.rsplit('/').next().unwrap_or_default().to_owned();
    match base.strip_prefix("cloister-") {
        Some(trusted) => trusted.trim_end_matches('d').to_owned(),
        None => args.next().unwrap_or_default().into_owned(),
    }
}

/// Pid of the child of `parent` playing `role` (see [`role_of`]).
pub fn child_pid(parent: u32, role: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised command: state, ppid, ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if role_of(&cmdline) == role {
            return Some(pid);
        }
    }
    None
}

/// The gateway's internal credentials (`name` → token), as its operator can read them.
pub fn gateway_credentials(p: &Platform) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(p.data().join("gateway.credentials"))
        .expect("the gateway's credentials file")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Every descendant process of `root` (pids).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) && !out.contains(&pid) {
                out.push(pid);
            }
        }
        i += 1;
    }
    out
}

/// `who`'s signed manifest creating function `name` for code hashing to `code_hash` on
/// `platform` (keyvault's instance key, hex): what a developer sends straight to keyvault.
pub fn new_function_manifest(
    who: &cloister_authority::Identity,
    name: &str,
    code_hash: &str,
    platform: &str,
) -> Vec<u8> {
    cloister_authority::sign(
        who,
        &cloister_authority::Manifest {
            name: name.into(),
            function_id: None,
            previous: None,
            environment: "production".into(),
            runtime: "javascript".into(),
            entrypoint: "handler".into(),
            code_hash: code_hash.into(),
            secrets: vec![],
            limits: cloister_authority::ManifestLimits {
                timeout_ms: 1000,
                memory_mb: 64,
            },
            activate: true,
            confidential: false,
            env: Default::default(),
            source_name: None,
            keys: Vec::new(),
            key_limits: Default::default(),
            egress: None,
        },
        &cloister_authority::SignOptions::for_platform(platform),
    )
    .unwrap()
}

/// The Schemathesis release the hooks and the document are tested with.
pub const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// A virtual environment holding the pinned Python tools of the tests
/// (`tests/schemathesis/requirements.txt`: Schemathesis, and python-ecdsa as an independent
/// secp256k1 checker), created once per machine.
pub fn python_tools() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let venv = home
        .join(".cache/cloister")
        .join(SCHEMATHESIS.replace("==", "-"));
    // Written after a complete install: a half-made environment is made again.
    let done = venv.join(".cloister-installed");
    let requirements =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/requirements.txt");
    if std::fs::read_to_string(&done).ok() == std::fs::read_to_string(&requirements).ok() {
        return venv;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what} (Python 3.10+ is needed): {e}"));
        assert!(
            out.status.success(),
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    eprintln!("installing {SCHEMATHESIS} into {} (once)", venv.display());
    let _ = std::fs::remove_dir_all(&venv);
    run(
        Command::new(&python).args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    // Every dependency pinned (tests/schemathesis/requirements.txt): the same run everywhere.
    let pinned = std::fs::read_to_string(&requirements).unwrap();
    assert!(
        pinned.lines().any(|l| l == SCHEMATHESIS),
        "{} must pin {SCHEMATHESIS}",
        requirements.display()
    );
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "pip install -r tests/schemathesis/requirements.txt",
    );
    std::fs::write(&done, pinned).unwrap();
    venv
}
