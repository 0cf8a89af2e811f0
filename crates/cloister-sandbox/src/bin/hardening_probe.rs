//! Probe for the worker hardening: calls the very `harden` a worker calls, then tries what a
//! worker must never do and reports, on its channel (descriptor 3), what the kernel answered.
//!
//! Usage: `hardening-probe UID [foreign-arch|abort|wait]`. It writes one JSON object (call
//! name → `"ok"` or the errno name), then waits until the channel closes so the caller can
//! read `/proc/<pid>/status` of the hardened process. With `foreign-arch` it instead makes an
//! i386 system call, which the filter answers by killing the process; with `abort` it aborts;
//! with `wait` it only waits.
//!
//! Not part of the platform: the tests of `cloister-sandbox` start it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;

use cloister_sandbox::WORKER_CHANNEL_FD;
use cloister_sandbox::hardening::harden;

fn errno_name(rc: libc::c_long) -> String {
    if rc >= 0 {
        return "ok".into();
    }
    // SAFETY: reading errno right after the call.
    match unsafe { *libc::__errno_location() } {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EBADF => "EBADF".into(),
        other => format!("errno {other}"),
    }
}

/// Each attempt, as a raw system call so nothing in libc or std stands in between.
fn attempts() -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    let path = c"/etc/passwd";
    let now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let byte = [0u8; 1];
    // SAFETY: every call gets valid pointers to locals or integer arguments; the ones that
    // would do harm are exactly those the filter must refuse.
    unsafe {
        let calls: [(&'static str, libc::c_long); 17] = [
            (
                "socket",
                libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0),
            ),
            (
                "open",
                libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    libc::O_RDONLY,
                ),
            ),
            (
                "ptrace",
                libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0),
            ),
            (
                "pidfd_open",
                libc::syscall(libc::SYS_pidfd_open, libc::getppid(), 0),
            ),
            ("pidfd_getfd", libc::syscall(libc::SYS_pidfd_getfd, 0, 0, 0)),
            (
                "pidfd_send_signal",
                libc::syscall(libc::SYS_pidfd_send_signal, 0, 0, 0, 0),
            ),
            (
                "clock_settime",
                libc::syscall(libc::SYS_clock_settime, libc::CLOCK_REALTIME, &now),
            ),
            ("kill", libc::syscall(libc::SYS_kill, 1, 0)),
            ("tgkill", libc::syscall(libc::SYS_tgkill, 1, 1, 0)),
            ("iopl", libc::syscall(libc::SYS_iopl, 3)),
            ("syslog", libc::syscall(libc::SYS_syslog, 10, 0, 0)),
            ("setuid_root", libc::syscall(libc::SYS_setresuid, 0, 0, 0)),
            ("fork", libc::syscall(libc::SYS_fork)),
            ("x32_getpid", libc::syscall(0x4000_0000 | libc::SYS_getpid)),
            (
                "write_stderr",
                libc::syscall(libc::SYS_write, 2, byte.as_ptr(), 1),
            ),
            (
                "mmap_exec",
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                ) as libc::c_long,
            ),
            (
                "getrandom",
                libc::syscall(libc::SYS_getrandom, byte.as_ptr(), 1, 0),
            ),
        ];
        for (name, rc) in calls {
            out.insert(name, errno_name(rc));
        }
    }
    out
}

/// An i386 system call (`getpid`, number 20) through the 32-bit entry point.
#[cfg(target_arch = "x86_64")]
fn foreign_arch_call() -> i64 {
    let mut eax: i64 = 20;
    // SAFETY: the i386 getpid takes no arguments and touches no memory; the filter is
    // expected to kill the process before it returns.
    unsafe { std::arch::asm!("int 0x80", inlateout("rax") eax) };
    eax
}

#[cfg(not(target_arch = "x86_64"))]
fn foreign_arch_call() -> i64 {
    -1
}

fn main() {
    let mut args = std::env::args().skip(1);
    let uid = args.next().and_then(|u| u.parse::<u32>().ok()).unwrap_or(0);
    let mode = args.next().unwrap_or_default();
    let hardened = match harden(WORKER_CHANNEL_FD, 64 << 20, uid) {
        Ok(h) => h,
        Err(_) => std::process::exit(70),
    };
    // SAFETY: the caller passes the channel as this descriptor, owned by nothing else here.
    let mut channel = unsafe { File::from_raw_fd(WORKER_CHANNEL_FD) };
    if mode == "abort" {
        // A hardened process that aborts must die, not spin on a fault it cannot handle.
        std::process::abort();
    }
    if mode == "wait" {
        // Block until the channel closes (the parent-death test kills the parent instead).
        let mut rest = Vec::new();
        let _ = channel.read_to_end(&mut rest);
        std::process::exit(0);
    }
    if mode == "foreign-arch" {
        let rc = foreign_arch_call();
        let _ = writeln!(channel, "{{\"foreign_arch\":{rc}}}");
        std::process::exit(0);
    }
    let mut report = attempts();
    report.insert("privileges", format!("{:?}", hardened.privileges));
    report.insert("landlock", format!("{:?}", hardened.landlock));
    let line = serde_json::to_string(&report).unwrap_or_default();
    if writeln!(channel, "{line}").is_err() {
        std::process::exit(71);
    }
    // Stay alive (hardened) until the caller has read our status and closes the channel.
    let mut rest = Vec::new();
    let _ = channel.read_to_end(&mut rest);
}
