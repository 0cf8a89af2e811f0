//! The worker's least privilege, seen from outside: a separate probe binary calls the same
//! `harden` the worker calls, then attempts forbidden system calls; its status file is read
//! while it is alive and hardened.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};

const PROBE: &str = env!("CARGO_BIN_EXE_hardening-probe");
/// A uid no account on a test machine uses.
const PROBE_UID: u32 = 0x7000_fff0;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Starts the probe with one end of a socket pair as its descriptor 3.
fn start_probe(extra: &[&str]) -> (Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new(PROBE);
    cmd.arg(PROBE_UID.to_string())
        .args(extra)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(theirs);
    (child, ours)
}

/// `Name:\tvalue` lines of `/proc/<pid>/status`.
fn status(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn a_hardened_probe_holds_no_privilege_and_every_forbidden_call_is_refused() {
    let (mut child, chan) = start_probe(&[]);
    let mut line = String::new();
    BufReader::new(&chan).read_line(&mut line).unwrap();
    let report: BTreeMap<String, String> = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("probe report {line:?}: {e}; exit {:?}", child.try_wait()));

    // Read while the probe is alive and hardened.
    let st = status(child.id());
    drop(chan);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "probe exit: {exit:?}");

    for call in [
        "socket",
        "open",
        "ptrace",
        "pidfd_open",
        "pidfd_getfd",
        "pidfd_send_signal",
        "clock_settime",
        "kill",
        "tgkill",
        "iopl",
        "syslog",
        "setuid_root",
        "fork",
        "x32_getpid",
        "write_stderr",
        "mmap_exec",
    ] {
        assert_eq!(report[call], "EPERM", "{call} must be refused: {report:?}");
    }
    assert_eq!(report["getrandom"], "ok", "an allowed call must still work");

    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        if set == "CapBnd" && report["privileges"] == "ExecutorUid" {
            continue; // an unprivileged process cannot shrink its bounding set
        }
        assert_eq!(st[set], "0000000000000000", "{set}: {st:?}");
    }
    assert_eq!(st["NoNewPrivs"], "1");
    assert_eq!(st["Seccomp"], "2", "seccomp filter mode");
    if is_root() {
        assert_eq!(report["privileges"], "DedicatedUid");
        let want = format!("{PROBE_UID}\t{PROBE_UID}\t{PROBE_UID}\t{PROBE_UID}");
        assert_eq!(st["Uid"], want);
        assert_eq!(st["Gid"], want);
        assert_eq!(st["Groups"], "");
    } else {
        assert!(!st["Uid"].split('\t').any(|u| u == "0"));
    }
}

#[test]
fn a_foreign_architecture_system_call_kills_the_probe() {
    if !cfg!(target_arch = "x86_64") {
        return;
    }
    let (mut child, chan) = start_probe(&["foreign-arch"]);
    let mut line = String::new();
    let _ = BufReader::new(&chan).read_line(&mut line);
    let exit = child.wait().unwrap();
    assert_eq!(
        exit.signal(),
        Some(libc::SIGSYS),
        "the i386 entry must be killed by the filter, got {exit:?} and {line:?}"
    );
}

#[test]
fn a_hardened_process_that_aborts_dies_instead_of_spinning() {
    let (mut child, _chan) = start_probe(&["abort"]);
    let started = std::time::Instant::now();
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.signal().is_some(), "{exit:?}");
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the aborting probe is still running (a fault loop)"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_hardened_process_dies_with_its_parent() {
    // bash starts the probe (passing descriptor 3 on), reports its pid, and is then killed.
    let (ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("{PROBE} {PROBE_UID} wait & echo $!; wait"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd != 3 && libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if fd == 3 && libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut parent = cmd.spawn().unwrap();
    drop(theirs);
    let mut line = String::new();
    BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let probe: i32 = line.trim().parse().unwrap();
    // Wait until the probe has hardened itself (its uid changed, or NoNewPrivs is set).
    let started = std::time::Instant::now();
    while status(probe as u32).get("NoNewPrivs").map(String::as_str) != Some("1") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "probe never hardened"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    parent.kill().unwrap();
    parent.wait().unwrap();
    let started = std::time::Instant::now();
    // SAFETY: signal 0 only checks existence.
    while unsafe { libc::kill(probe, 0) } == 0 {
        let zombie = std::fs::read_to_string(format!("/proc/{probe}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        if zombie {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "the probe outlived its parent"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(ours);
}
