//! Process hardening a worker applies to itself before it reads any untrusted input.
//!
//! Order matters: descriptors are closed first; then privileges are dropped (a dedicated
//! unprivileged uid/gid when started as root, otherwise a user namespace with no mapping to
//! root; every capability set emptied, including the bounding and ambient sets; not dumpable;
//! `no_new_privs`); then rlimits; then Landlock (no filesystem access at all); last a seccomp
//! filter that is an allow-list: exactly the system calls QuickJS, the allocator and the frame
//! protocol need, everything else refused with `EPERM`, and a call from a foreign
//! architecture (the i386 `int 0x80` entry) kills the process.

use std::collections::BTreeMap;
use std::io;

use caps::CapSet;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::protocol::Privileges;

/// Errors while hardening; a worker that cannot harden itself refuses to run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// Landlock could not be set up.
    #[error("landlock: {0}")]
    Landlock(String),
    /// A capability set could not be read or emptied.
    #[error("capabilities: {0}")]
    Capabilities(String),
    /// A worker started as root was asked to keep uid or gid 0.
    #[error("a worker may not run as uid or gid 0")]
    RootWorkerUid,
    /// The supervisor exited while the worker was dropping its privileges.
    #[error("the supervisor is gone")]
    ParentGone,
    /// After dropping, the process still holds a privilege it should not.
    #[error("privileges were not dropped: {0}")]
    StillPrivileged(&'static str),
}

fn sys_err(what: &'static str) -> HardeningError {
    HardeningError::Sys {
        what,
        source: io::Error::last_os_error(),
    }
}

/// System calls a worker may make without conditions once it is hardened.
///
/// Measured with `strace -f` over every reference workload (the allocator's `brk`, `mmap`
/// family and `madvise`; `futex` from std's locks; `getrandom` for hash seeds; the clocks,
/// which a VM without a usable vDSO clock reaches by system call; signal-return and alternate
/// stack housekeeping; `rt_sigaction`, without which a crash handler cannot reset itself and
/// a fault would repeat forever instead of ending the process; `close` and exit).
pub const ALLOWED_SYSCALLS: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_sigaltstack,
    libc::SYS_close,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// System calls allowed only on the channel descriptor (argument 0).
pub const CHANNEL_SYSCALLS: &[i64] = &[libc::SYS_read, libc::SYS_write];

/// System calls allowed only without `PROT_EXEC` in their protection argument (argument 2):
/// no executable memory can ever be made.
pub const NO_EXEC_SYSCALLS: &[i64] = &[libc::SYS_mmap, libc::SYS_mprotect];

fn seccomp_err(e: impl std::fmt::Display) -> HardeningError {
    HardeningError::Seccomp(e.to_string())
}

/// Builds the allow-list seccomp program for a worker whose channel is `channel_fd`
/// (allocates; call before anything that must not allocate).
pub fn seccomp_program(channel_fd: i32) -> Result<BpfProgram, HardeningError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(seccomp_err)?;
    let fd = u64::try_from(channel_fd).map_err(seccomp_err)?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED_SYSCALLS.iter().map(|&nr| (nr, vec![])).collect();
    for &nr in CHANNEL_SYSCALLS {
        let on_channel = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, fd)
            .map_err(seccomp_err)?;
        rules.insert(
            nr,
            vec![SeccompRule::new(vec![on_channel]).map_err(seccomp_err)?],
        );
    }
    for &nr in NO_EXEC_SYSCALLS {
        let no_exec = SeccompCondition::new(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
            0,
        )
        .map_err(seccomp_err)?;
        rules.insert(
            nr,
            vec![SeccompRule::new(vec![no_exec]).map_err(seccomp_err)?],
        );
    }
    // Anything not matched (including every x32 number, which carries a high bit no rule
    // has) gets EPERM; a foreign architecture is killed by the filter's arch check.
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(seccomp_err)?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| seccomp_err(e))
}

/// Installs a prebuilt seccomp program (sets `no_new_privs`).
pub fn install_seccomp(program: &BpfProgram) -> Result<(), HardeningError> {
    seccompiler::apply_filter(program).map_err(seccomp_err)
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
        return Err(sys_err(what));
    }
    Ok(())
}

/// Closes every descriptor above `keep` (the channel), so nothing inherited stays open.
pub fn close_other_fds(keep: i32) -> Result<(), HardeningError> {
    // SAFETY: close_range only closes descriptors; none above `keep` is owned by Rust code here.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32) };
    if rc != 0 {
        return Err(sys_err("close_range"));
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

fn prctl(
    option: libc::c_int,
    arg: libc::c_ulong,
    what: &'static str,
) -> Result<(), HardeningError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            option,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    } != 0
    {
        return Err(sys_err(what));
    }
    Ok(())
}

/// Drops every capability the kernel knows from the bounding set (needs `CAP_SETPCAP`).
fn drop_bounding_set() -> Result<(), HardeningError> {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                return Ok(()); // past the last capability this kernel has
            }
            return Err(HardeningError::Sys {
                what: "PR_CAPBSET_DROP",
                source: err,
            });
        }
    }
    Ok(())
}

/// Whether any capability is left in the bounding set.
fn bounding_set_empty() -> bool {
    (0..64).all(|cap| {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        rc <= 0 // 0: not held; -1 (EINVAL): past the last capability
    })
}

/// Empties the bounding set (while `CAP_SETPCAP` is still held) and the ambient set.
fn empty_bounding_and_ambient() -> Result<(), HardeningError> {
    drop_bounding_set()?;
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        "PR_CAP_AMBIENT_CLEAR_ALL",
    )
}

/// Enters a new user namespace with no uid mapping; false where that is refused.
fn enter_user_namespace() -> bool {
    // SAFETY: unshare with a flag only; a worker is single-threaded while it hardens.
    unsafe { libc::unshare(libc::CLONE_NEWUSER) == 0 }
}

fn switch_to(uid: u32) -> Result<(), HardeningError> {
    if uid == 0 {
        return Err(HardeningError::RootWorkerUid);
    }
    // SAFETY: plain system calls with integer arguments (and no group list).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(sys_err("setgroups"));
        }
        if libc::setresgid(uid, uid, uid) != 0 {
            return Err(sys_err("setresgid"));
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            return Err(sys_err("setresuid"));
        }
    }
    Ok(())
}

fn ids() -> ([u32; 3], [u32; 3]) {
    let (mut r, mut e, mut s) = (0, 0, 0);
    let (mut rg, mut eg, mut sg) = (0, 0, 0);
    // SAFETY: valid pointers to locals.
    unsafe {
        libc::getresuid(&mut r, &mut e, &mut s);
        libc::getresgid(&mut rg, &mut eg, &mut sg);
    }
    ([r, e, s], [rg, eg, sg])
}

/// Drops every privilege this process has; `uid` is the dedicated uid (and gid) a worker
/// started as root switches to.
///
/// As root: the bounding and ambient sets are emptied while `CAP_SETPCAP` is still held, the
/// supplementary groups cleared, then real, effective and saved uid and gid become `uid`.
/// Otherwise the process enters a new user namespace with no uid mapping (so it can never be
/// root anywhere) where that is allowed. Either way every capability set ends empty, the
/// process is not dumpable and has `no_new_privs`, and this is checked before returning.
pub fn drop_privileges(uid: u32) -> Result<Privileges, HardeningError> {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")?;
    prctl(libc::PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")?;
    // SAFETY: geteuid has no preconditions.
    let privileges = if unsafe { libc::geteuid() } == 0 {
        empty_bounding_and_ambient()?;
        match switch_to(uid) {
            Ok(()) => Privileges::DedicatedUid,
            // Root inside a user namespace that does not map `uid` (a rootless container):
            // a nested namespace without any mapping is the next best thing.
            Err(HardeningError::Sys { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) =>
            {
                if !enter_user_namespace() {
                    return Err(sys_err("unshare(CLONE_NEWUSER)"));
                }
                empty_bounding_and_ambient()?;
                Privileges::UserNamespace
            }
            Err(e) => return Err(e),
        }
    } else if enter_user_namespace() {
        empty_bounding_and_ambient()?;
        Privileges::UserNamespace
    } else {
        Privileges::ExecutorUid
    };
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        caps::clear(None, set).map_err(|e| HardeningError::Capabilities(e.to_string()))?;
    }
    // A credential change resets PR_SET_DUMPABLE and clears the parent-death signal the
    // supervisor set: set both again, and stop if the supervisor is already gone.
    prctl(libc::PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")?;
    prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        "PR_SET_PDEATHSIG",
    )?;
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        return Err(HardeningError::ParentGone);
    }
    verify_dropped(privileges, uid)?;
    Ok(privileges)
}

fn verify_dropped(privileges: Privileges, uid: u32) -> Result<(), HardeningError> {
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        let held =
            caps::read(None, set).map_err(|e| HardeningError::Capabilities(e.to_string()))?;
        if !held.is_empty() {
            return Err(HardeningError::StillPrivileged(
                "a capability set is not empty",
            ));
        }
    }
    if privileges != Privileges::ExecutorUid && !bounding_set_empty() {
        return Err(HardeningError::StillPrivileged(
            "the bounding set is not empty",
        ));
    }
    let (uids, gids) = ids();
    if privileges == Privileges::DedicatedUid && (uids != [uid; 3] || gids != [uid; 3]) {
        return Err(HardeningError::StillPrivileged("uid or gid did not change"));
    }
    if uids.contains(&0) {
        return Err(HardeningError::StillPrivileged("a uid is still 0"));
    }
    Ok(())
}

/// How much Landlock protection the kernel gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
        .map_err(|e| HardeningError::Landlock(e.to_string()))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockLevel::Full,
        RulesetStatus::PartiallyEnforced => LandlockLevel::Partial,
        RulesetStatus::NotEnforced => LandlockLevel::Unavailable,
    })
}

/// What hardening achieved, reported to the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardened {
    /// Filesystem isolation.
    pub landlock: LandlockLevel,
    /// Which identity the process ended with.
    pub privileges: Privileges,
}

/// Applies everything, in order, for a worker whose channel is `channel_fd`, whose heap may
/// use `heap_bytes` and which runs as `uid` when started as root.
pub fn harden(channel_fd: i32, heap_bytes: usize, uid: u32) -> Result<Hardened, HardeningError> {
    close_other_fds(channel_fd)?;
    let program = seccomp_program(channel_fd)?;
    let privileges = drop_privileges(uid)?;
    apply_rlimits(heap_bytes)?;
    let landlock = deny_filesystem()?;
    install_seccomp(&program)?;
    Ok(Hardened {
        landlock,
        privileges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `probe` in a forked child after installing the filter; returns its exit code.
    fn in_filtered_child(probe: fn() -> i32) -> i32 {
        let program = seccomp_program(1).unwrap();
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
    fn calls_outside_the_allow_list_are_refused() {
        let code = in_filtered_child(|| unsafe {
            let socket = libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0);
            let fork = libc::syscall(libc::SYS_fork);
            let getpid = libc::syscall(libc::SYS_getpid);
            let x32_getpid = libc::syscall(0x4000_0000 | libc::SYS_getpid);
            match (eperm(socket), eperm(fork), eperm(getpid), eperm(x32_getpid)) {
                (true, true, true, true) => 0,
                (false, _, _, _) => 1,
                (_, false, _, _) => 2,
                (_, _, false, _) => 3,
                _ => 4,
            }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn io_only_on_the_channel_and_no_executable_memory() {
        let code = in_filtered_child(|| unsafe {
            let byte = [0u8; 1];
            let on_channel = libc::syscall(libc::SYS_write, 1, byte.as_ptr(), 0);
            let elsewhere = libc::syscall(libc::SYS_write, 2, byte.as_ptr(), 0);
            let map = |prot| {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            let data = map(libc::PROT_READ | libc::PROT_WRITE);
            let code = map(libc::PROT_READ | libc::PROT_EXEC);
            match (
                on_channel == 0,
                eperm(elsewhere),
                data != libc::MAP_FAILED,
                code == libc::MAP_FAILED,
            ) {
                (true, true, true, true) => 0,
                (false, _, _, _) => 1,
                (_, false, _, _) => 2,
                (_, _, false, _) => 3,
                _ => 4,
            }
        });
        assert_eq!(code, 0);
    }
}
