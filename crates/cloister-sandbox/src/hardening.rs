//! Process hardening a worker applies to itself before it reads any untrusted input.
//!
//! Order matters: descriptors are closed first, then rlimits, then Landlock (no filesystem
//! access at all), then a seccomp filter that refuses network, process creation, exec,
//! tracing and kernel-configuration system calls with `EPERM`. `no_new_privs` is set by both.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// Errors while hardening; a worker that cannot harden itself refuses to run.
#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The seccomp filter could not be built or installed.
    #[error("seccomp: {0}")]
    Seccomp(String),
}

/// System calls a worker may never make. Threads are not needed either, so `clone` goes too.
pub const DENIED_SYSCALLS: &[i64] = &[
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kill,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_setns,
    libc::SYS_unshare,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_open_by_handle_at,
    libc::SYS_reboot,
];

/// Builds the seccomp program (allocates; call before `fork` when testing).
pub fn seccomp_program() -> Result<BpfProgram, HardeningError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| HardeningError::Seccomp(e.to_string()))?;
    let rules = DENIED_SYSCALLS
        .iter()
        .map(|&nr| (nr, vec![]))
        .collect::<BTreeMap<_, _>>();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| HardeningError::Seccomp(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| HardeningError::Seccomp(e.to_string()))
}

/// Installs a prebuilt seccomp program (sets `no_new_privs`).
pub fn install_seccomp(program: &BpfProgram) -> Result<(), HardeningError> {
    seccompiler::apply_filter(program).map_err(|e| HardeningError::Seccomp(e.to_string()))
}

fn setrlimit(
    resource: libc::__rlimit_resource_t,
    value: u64,
    what: &'static str,
) -> Result<(), HardeningError> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: plain system call with a valid pointer to a local struct.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(HardeningError::Sys {
            what,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Closes every descriptor above `keep` (the channel), so nothing inherited stays open.
pub fn close_other_fds(keep: i32) -> Result<(), HardeningError> {
    // SAFETY: close_range only closes descriptors; none above `keep` is owned by Rust code here.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32) };
    if rc != 0 {
        return Err(HardeningError::Sys {
            what: "close_range",
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Resource limits for a worker whose JavaScript heap may use `heap_bytes`.
pub fn apply_rlimits(heap_bytes: usize) -> Result<(), HardeningError> {
    // Address space: the heap, the mapped executable, the stack and allocator slack.
    let address_space = heap_bytes as u64 + (512 << 20);
    setrlimit(libc::RLIMIT_AS, address_space, "RLIMIT_AS")?;
    setrlimit(libc::RLIMIT_CORE, 0, "RLIMIT_CORE")?;
    setrlimit(libc::RLIMIT_FSIZE, 0, "RLIMIT_FSIZE")?;
    setrlimit(libc::RLIMIT_NOFILE, 16, "RLIMIT_NOFILE")?;
    setrlimit(libc::RLIMIT_NPROC, 0, "RLIMIT_NPROC")?;
    setrlimit(libc::RLIMIT_MEMLOCK, 0, "RLIMIT_MEMLOCK")?;
    Ok(())
}

/// How much Landlock protection the kernel gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockLevel {
    /// Every filesystem access is denied.
    Full,
    /// Some access rights are not known to this kernel.
    Partial,
    /// The kernel has no Landlock; seccomp and rlimits still apply.
    Unavailable,
}

/// Denies all filesystem access to this process (an empty filesystem view).
pub fn deny_filesystem() -> Result<LandlockLevel, HardeningError> {
    use landlock::{ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetStatus};
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI::V5))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| HardeningError::Seccomp(format!("landlock: {e}")))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockLevel::Full,
        RulesetStatus::PartiallyEnforced => LandlockLevel::Partial,
        RulesetStatus::NotEnforced => LandlockLevel::Unavailable,
    })
}

/// Applies everything, in order, for a worker whose channel is `channel_fd`.
pub fn harden(channel_fd: i32, heap_bytes: usize) -> Result<LandlockLevel, HardeningError> {
    close_other_fds(channel_fd)?;
    let program = seccomp_program()?;
    apply_rlimits(heap_bytes)?;
    let landlock = deny_filesystem()?;
    install_seccomp(&program)?;
    Ok(landlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `probe` in a forked child after installing the filter; returns its exit code.
    fn in_hardened_child(probe: fn() -> i32) -> i32 {
        let program = seccomp_program().unwrap();
        // SAFETY: the child only makes raw system calls before _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let code = if seccompiler::apply_filter(&program).is_ok() {
                    probe()
                } else {
                    99
                };
                libc::_exit(code);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert!(libc::WIFEXITED(status), "child died: {status}");
            libc::WEXITSTATUS(status)
        }
    }

    fn eperm(rc: libc::c_long) -> bool {
        // SAFETY: reading errno right after the call.
        rc == -1 && unsafe { *libc::__errno_location() } == libc::EPERM
    }

    #[test]
    fn sockets_are_refused() {
        let code = in_hardened_child(|| unsafe {
            let rc = libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0);
            if eperm(rc) { 0 } else { 1 }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn exec_and_fork_are_refused() {
        let code = in_hardened_child(|| unsafe {
            let path = c"/bin/true".as_ptr();
            let argv = [path, std::ptr::null()];
            let envp = [std::ptr::null::<libc::c_char>()];
            let exec = libc::syscall(libc::SYS_execve, path, argv.as_ptr(), envp.as_ptr());
            let fork = libc::syscall(libc::SYS_fork);
            let clone = libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0);
            match (eperm(exec), eperm(fork), eperm(clone)) {
                (true, true, true) => 0,
                (false, _, _) => 1,
                (_, false, _) => 2,
                _ => 3,
            }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn ordinary_calls_still_work() {
        let code = in_hardened_child(|| unsafe {
            let pid = libc::syscall(libc::SYS_getpid);
            let mem = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if pid > 0 && mem != libc::MAP_FAILED {
                0
            } else {
                1
            }
        });
        assert_eq!(code, 0);
    }
}
