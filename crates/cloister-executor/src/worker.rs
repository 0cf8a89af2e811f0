//! One sandboxed worker process as seen from the supervisor.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cloister_sandbox::frame::{self, FrameError};
use cloister_sandbox::host::{
    HostAnswer, HostCall, HostRefusal, HostRequest, LogLines, MAX_LOG_LINE_BYTES, MAX_LOG_LINES,
    MAX_REQUEST_BYTES_PER_INVOCATION, MAX_REQUESTS_PER_INVOCATION,
};
use cloister_sandbox::protocol::{
    ErrorCode, FromWorker, Invoke, Load, LoadError, Outcome, Privileges, Ready, ToWorker,
};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use crate::places::Place;

/// First argument of a worker process (see [`cloister_sandbox::WORKER_ARG`]).
pub const WORKER_SUBCOMMAND: &str = cloister_sandbox::WORKER_ARG;

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The code did not load (syntax error, missing entrypoint, top-level throw).
    #[error("{}", .0.message)]
    Load(LoadError),
    /// The process could not be started or died while loading.
    #[error("worker failed to start: {0}")]
    Process(String),
}

/// Why an invocation got no answer from the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerFault {
    /// No answer before the supervisor's deadline; the worker was killed.
    #[error("no answer before the deadline")]
    Timeout,
    /// The worker died or broke the protocol.
    #[error("worker crashed: {0}")]
    Crashed(String),
}

/// What one invocation of a worker gave.
#[derive(Debug)]
pub struct Invoked {
    /// The outcome, or why there is none.
    pub result: Result<Outcome, WorkerFault>,
    /// The `context.log` lines the worker sent before it finished or stopped, bounded.
    pub logs: Vec<String>,
}

/// The capabilities one function's manifest grants, answering its workers' requests
/// (`crate::capabilities` composes them).
#[async_trait::async_trait]
pub trait Capabilities: Send + Sync {
    /// Answers `request` (never a log line: the supervisor keeps those itself).
    async fn answer(
        &self,
        request: HostRequest,
    ) -> Result<cloister_sandbox::host::HostValue, HostRefusal>;
}

/// Why a conversation with a worker ended early.
enum Converse {
    Frame(FrameError),
    Protocol(&'static str),
}

impl From<FrameError> for Converse {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}

impl From<std::io::Error> for Converse {
    fn from(e: std::io::Error) -> Self {
        Self::Frame(FrameError::Io(e))
    }
}

/// A live worker serving one function version.
pub struct WorkerProcess {
    child: Child,
    /// The executor place this worker holds (given back when this value is dropped).
    _place: Place,
    chan: UnixStream,
    pid: u32,
    /// Whether the worker reported Landlock filesystem isolation.
    pub ready: Ready,
    /// When this worker last finished an invocation.
    pub last_used: Instant,
}

impl WorkerProcess {
    /// Starts a worker, hands it the function and waits until it is loaded.
    ///
    /// The worker holds `place` for as long as it exists; the place's uid is the
    /// unprivileged uid (and gid) the worker switches to when the executor runs as root.
    pub async fn spawn(
        exe: &Path,
        load: Load,
        place: Place,
        deadline: Duration,
    ) -> Result<Self, SpawnError> {
        let uid = place.uid();
        let (ours, theirs) =
            StdUnixStream::pair().map_err(|e| SpawnError::Process(format!("socketpair: {e}")))?;
        let theirs_fd = theirs.as_raw_fd();
        let mut cmd = Command::new(exe);
        cmd.arg(WORKER_SUBCOMMAND)
            .arg(load.memory_bytes.to_string())
            .arg(uid.to_string())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let target = cloister_sandbox::WORKER_CHANNEL_FD;
                if theirs_fd == target {
                    // dup2 onto itself keeps FD_CLOEXEC: clear it explicitly.
                    if libc::fcntl(target, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(theirs_fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The worker dies with its supervisor.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // ETXTBSY: another thread forked while the executable was open for writing (a file
        // just written, as in tests, or an upgrade in place); it passes once that child execs.
        let mut attempt = 0;
        let child = loop {
            match cmd.spawn() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 10 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => {
                    break other
                        .map_err(|e| SpawnError::Process(format!("{}: {e}", exe.display())))?;
                }
            }
        };
        drop(theirs);
        ours.set_nonblocking(true)
            .map_err(|e| SpawnError::Process(e.to_string()))?;
        let chan = UnixStream::from_std(ours).map_err(|e| SpawnError::Process(e.to_string()))?;
        let pid = child.id().unwrap_or(0);
        let mut worker = Self {
            child,
            _place: place,
            chan,
            pid,
            ready: Ready {
                filesystem_isolated: false,
                privileges: Privileges::ExecutorUid,
            },
            last_used: Instant::now(),
        };
        let reply = tokio::time::timeout(deadline, worker.round_trip(&ToWorker::Load(load))).await;
        match reply {
            Ok(Ok(FromWorker::Loaded(Ok(ready)))) => {
                worker.ready = ready;
                Ok(worker)
            }
            Ok(Ok(FromWorker::Loaded(Err(e)))) => Err(SpawnError::Load(e)),
            Ok(Ok(FromWorker::Done(_) | FromWorker::Call(_))) => {
                Err(SpawnError::Process("protocol violation".into()))
            }
            Ok(Err(e)) => Err(SpawnError::Process(worker.death_reason(e).await)),
            Err(_) => {
                worker.kill().await;
                Err(SpawnError::Load(LoadError {
                    message: "loading the code did not finish before the deadline".into(),
                    line: None,
                    column: None,
                }))
            }
        }
    }

    async fn round_trip<T: DeserializeOwned>(&mut self, msg: &ToWorker) -> Result<T, FrameError> {
        self.send(msg).await?;
        Ok(self.receive().await?.0)
    }

    async fn send(&mut self, msg: &ToWorker) -> Result<(), FrameError> {
        let bytes = frame::encode(msg)?;
        self.chan.write_all(&bytes).await?;
        Ok(())
    }

    /// Reads one frame; also returns its size.
    async fn receive<T: DeserializeOwned>(&mut self) -> Result<(T, usize), FrameError> {
        let mut header = [0u8; 4];
        if let Err(e) = self.chan.read_exact(&mut header).await {
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                FrameError::Closed
            } else {
                e.into()
            });
        }
        let mut body = vec![0u8; frame::body_len(header)?];
        self.chan.read_exact(&mut body).await?;
        Ok((serde_json::from_slice(&body)?, body.len()))
    }

    /// Runs one invocation, answering the function's requests with `capabilities`; kills the
    /// worker if it does not finish within `deadline`. The log lines it wrote are kept
    /// whatever the outcome (a function that times out still shows what it logged).
    pub async fn invoke(
        &mut self,
        inv: Invoke,
        deadline: Duration,
        capabilities: &dyn Capabilities,
    ) -> Invoked {
        let mut logs = LogLines::default();
        let converse = self.converse(inv, capabilities, &mut logs);
        let result = match tokio::time::timeout(deadline, converse).await {
            Ok(Ok(outcome)) => {
                self.last_used = Instant::now();
                Ok(outcome)
            }
            Ok(Err(Converse::Frame(e))) => Err(WorkerFault::Crashed(self.death_reason(e).await)),
            Ok(Err(Converse::Protocol(what))) => {
                self.kill().await;
                Err(WorkerFault::Crashed(format!("protocol violation: {what}")))
            }
            Err(_) => {
                self.kill().await;
                Err(WorkerFault::Timeout)
            }
        };
        Invoked {
            result,
            logs: logs.finish(),
        }
    }

    async fn converse(
        &mut self,
        inv: Invoke,
        capabilities: &dyn Capabilities,
        logs: &mut LogLines,
    ) -> Result<Outcome, Converse> {
        self.send(&ToWorker::Invoke(inv)).await?;
        let (mut requests, mut request_bytes, mut notices) = (0u32, 0usize, 0usize);
        loop {
            let (msg, size) = self.receive::<FromWorker>().await?;
            let HostCall { id, request } = match msg {
                FromWorker::Done(outcome) => {
                    logs.add_dropped(outcome.logs_dropped);
                    return Ok(outcome);
                }
                FromWorker::Loaded(_) => return Err(Converse::Protocol("a second Loaded")),
                FromWorker::Call(call) => call,
            };
            if let HostRequest::Log { line } = request {
                // The worker sends at most MAX_LOG_LINES lines of at most MAX_LOG_LINE_BYTES
                // (JSON may escape each byte as six): more is not a function's doing.
                notices += 1;
                if notices > MAX_LOG_LINES || size > MAX_LOG_LINE_BYTES * 6 + 256 {
                    return Err(Converse::Protocol(
                        "log notices beyond the worker's own limits",
                    ));
                }
                logs.push(line);
                continue;
            }
            requests = requests.saturating_add(1);
            request_bytes = request_bytes.saturating_add(size);
            // Refused past the limits; a worker that keeps asking is not running JavaScript
            // that reads its refusals, and is stopped.
            if requests > 2 * MAX_REQUESTS_PER_INVOCATION
                || request_bytes > 2 * MAX_REQUEST_BYTES_PER_INVOCATION
            {
                return Err(Converse::Protocol(
                    "host calls far beyond the per-call limits",
                ));
            }
            let result = if requests > MAX_REQUESTS_PER_INVOCATION {
                Err(HostRefusal::new(
                    ErrorCode::RateLimited,
                    format!(
                        "an invocation may make at most {MAX_REQUESTS_PER_INVOCATION} host calls"
                    ),
                ))
            } else if request_bytes > MAX_REQUEST_BYTES_PER_INVOCATION {
                Err(HostRefusal::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "an invocation may send at most {MAX_REQUEST_BYTES_PER_INVOCATION} bytes \
                         of host calls"
                    ),
                ))
            } else {
                capabilities.answer(request).await
            };
            self.send(&ToWorker::Answer(HostAnswer { id, result }))
                .await?;
        }
    }

    async fn death_reason(&mut self, e: FrameError) -> String {
        let status = tokio::time::timeout(Duration::from_millis(500), self.child.wait()).await;
        match status {
            Ok(Ok(s)) => match (s.code(), s.signal()) {
                (_, Some(sig)) => format!("worker killed by signal {sig}"),
                (Some(code), _) => format!("worker exited with status {code}"),
                _ => format!("worker ended: {e}"),
            },
            _ => {
                self.kill().await;
                format!("worker channel failed: {e}")
            }
        }
    }

    /// Process id (for status reports).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resident memory of the worker process, from `/proc`.
    pub fn rss_bytes(&self) -> Option<u64> {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * u64::try_from(page).ok()?)
    }

    /// Stops the worker and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Lets a worker that is exiting by itself go, reaping it in the background.
    pub fn release(mut self) {
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_secs(1), self.child.wait())
                .await
                .is_err()
            {
                self.kill().await;
            }
        });
    }
}
