//! Hardening of this process: files private to the user (every role), and for the trusted
//! roles (keyvault, the executor supervisor) no core dumps and not dumpable, so neither a
//! crash nor another process of the same user can read key material out of memory, and
//! their pages locked in memory so no key reaches swap.

use anyhow::bail;

/// Every file this process creates is private (mode 0600 / 0700): databases, tokens,
/// identities, the guard, CLI configuration.
pub fn private_files() {
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Descriptors kept free for everything but client connections (store, RPC, logs).
const RESERVED_FDS: u64 = 256;

/// Raises the soft open-files limit so `wanted` client connections fit, as far as the hard
/// limit allows; returns how many connections fit (warning when that is fewer).
pub fn room_for_connections(wanted: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return wanted;
        }
        let need = wanted as u64 + RESERVED_FDS;
        if lim.rlim_cur < need {
            let raised = libc::rlimit {
                rlim_cur: need.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = raised.rlim_cur;
            }
        }
    }
    let fit = usize::try_from(lim.rlim_cur.saturating_sub(RESERVED_FDS))
        .unwrap_or(wanted)
        .max(1);
    if fit < wanted {
        tracing::warn!(
            wanted,
            fit,
            "the open-files limit allows fewer connections than --max-connections; using {fit}"
        );
    }
    fit.min(wanted)
}

/// No core dumps (`RLIMIT_CORE` 0) and not dumpable (`PR_SET_DUMPABLE` 0: no ptrace by
/// same-user processes, `/proc/<pid>/mem` and friends owned by root).
pub fn trusted_process() -> anyhow::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls with valid arguments.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_CORE, &zero) != 0 {
            bail!(
                "cannot disable core dumps: {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            bail!(
                "cannot make the process non-dumpable: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    if let Err(why) = keep_out_of_swap() {
        tracing::warn!("key material may be swapped to disk: {why}");
    }
    Ok(())
}

/// `MCL_ONFAULT` (Linux 4.4): lock pages as they are first touched, not the whole of every
/// mapping at once (thread stacks, reserved arenas).
const MCL_ONFAULT: libc::c_int = 4;

/// Locks every page of this process, present and future, into memory so no key ever reaches
/// swap. Only where the lock cannot later make an allocation fail: with `CAP_IPC_LOCK`
/// (root) or an unlimited `RLIMIT_MEMLOCK`; otherwise says why not.
pub fn keep_out_of_swap() -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain queries and mlockall with flags only.
    unsafe {
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim);
        if libc::geteuid() != 0 && lim.rlim_cur != libc::RLIM_INFINITY {
            return Err(format!(
                "not root and RLIMIT_MEMLOCK is {} bytes (run as root or raise it to unlimited)",
                lim.rlim_cur
            ));
        }
        if libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | MCL_ONFAULT) != 0 {
            return Err(format!("mlockall: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Runs the hardening in a child process (this test binary re-run with a marker) and
    /// reads what the kernel reports back.
    #[test]
    fn trusted_processes_are_not_dumpable_and_dump_no_core() {
        if std::env::var_os("CLOISTER_HARDEN_CHILD").is_some() {
            super::private_files();
            super::trusted_process().unwrap();
            // SAFETY: plain queries.
            let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
            let mut lim = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) };
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("f");
            std::fs::write(&f, b"x").unwrap();
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            // Locked memory, from the kernel's own account.
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let locked_kb: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmLck:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                .unwrap_or(0);
            // SAFETY: plain query.
            let root = unsafe { libc::geteuid() } == 0;
            println!(
                "RESULT dumpable={dumpable} core={} mode={mode:o} locked={}",
                lim.rlim_max,
                !root || locked_kb > 0
            );
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "harden::tests::trusted_processes_are_not_dumpable_and_dump_no_core",
                "--nocapture",
            ])
            .env("CLOISTER_HARDEN_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("RESULT dumpable=0 core=0 mode=600 locked=true"),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
