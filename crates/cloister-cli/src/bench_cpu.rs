//! CPU time of the local platform's processes, by role, for the benchmarks: run time from
//! `/proc/PID/task/*/schedstat` (nanoseconds; `stat`'s 10 ms ticks are too coarse for tens
//! of microseconds per call). The bench itself is left out. Linux only: elsewhere every
//! figure is zero.

use std::collections::HashMap;

use serde::Serialize;

/// Which part of the platform a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Gateway,
    Executor,
    Keyvault,
    Workers,
}

/// CPU nanoseconds of each role at one moment.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    by_role: HashMap<Role, u64>,
    processes: usize,
}

/// CPU microseconds per call of each role between two snapshots.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuPerCall {
    /// Every server process.
    pub total_us: f64,
    /// The gateway (and the `serve` launcher).
    pub gateway_us: f64,
    /// The executor's supervisor.
    pub executor_us: f64,
    /// keyvault.
    pub keyvault_us: f64,
    /// The function workers.
    pub workers_us: f64,
}

impl CpuSnapshot {
    /// The platform's processes now.
    pub fn take() -> Self {
        let me = std::process::id();
        let all = processes();
        let mut role: HashMap<u32, Role> = HashMap::new();
        for (pid, _, comm) in &all {
            if *pid == me || !comm.starts_with("cloister") {
                continue;
            }
            // `comm` is cut to 15 bytes: "cloister-keyvau", "cloister-execut".
            let r = if comm.starts_with("cloister-keyva") {
                Role::Keyvault
            } else if comm.starts_with("cloister-execu") {
                Role::Executor
            } else {
                Role::Gateway
            };
            role.insert(*pid, r);
        }
        // Descendants: the executor's are workers (they run from a sealed memfd under
        // another name); the others' count with their parent.
        loop {
            let before = role.len();
            let found: Vec<(u32, Role)> = all
                .iter()
                .filter(|(pid, _, _)| *pid != me && !role.contains_key(pid))
                .filter_map(|(pid, ppid, _)| {
                    role.get(ppid).map(|r| {
                        let r = match r {
                            Role::Executor | Role::Workers => Role::Workers,
                            other => *other,
                        };
                        (*pid, r)
                    })
                })
                .collect();
            role.extend(found);
            if role.len() == before {
                break;
            }
        }
        let mut by_role = HashMap::new();
        for (pid, r) in &role {
            *by_role.entry(*r).or_insert(0) += cpu_ns(*pid);
        }
        Self {
            by_role,
            processes: role.len(),
        }
    }

    /// CPU nanoseconds of every server process.
    pub fn total_ns(&self) -> u64 {
        self.by_role.values().sum()
    }

    /// How many server processes there were.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// Microseconds per call of each role from `self` to `later`, over `calls` calls.
    pub fn per_call(&self, later: &Self, calls: usize) -> CpuPerCall {
        let calls = calls.max(1) as f64;
        let us = |r: Role| {
            let a = self.by_role.get(&r).copied().unwrap_or(0);
            let b = later.by_role.get(&r).copied().unwrap_or(0);
            // A worker that retired between the snapshots takes its time with it.
            b.saturating_sub(a) as f64 / 1000.0 / calls
        };
        let (gateway_us, executor_us, keyvault_us, workers_us) = (
            us(Role::Gateway),
            us(Role::Executor),
            us(Role::Keyvault),
            us(Role::Workers),
        );
        CpuPerCall {
            total_us: gateway_us + executor_us + keyvault_us + workers_us,
            gateway_us,
            executor_us,
            keyvault_us,
            workers_us,
        }
    }
}

/// (pid, ppid, comm) of every process.
fn processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `comm` is in parentheses and may hold spaces: fields resume after the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        // Field 3 is the state, field 4 the parent.
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        out.push((pid, ppid, comm));
    }
    out
}

/// CPU nanoseconds of this process (the bench: the clients' side of the calls).
pub fn own_ns() -> u64 {
    cpu_ns(std::process::id())
}

/// CPU time of one process in nanoseconds: the sum of its threads' run time.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_divides_each_roles_difference() {
        let at = |g, e, k, w| CpuSnapshot {
            by_role: HashMap::from([
                (Role::Gateway, g),
                (Role::Executor, e),
                (Role::Keyvault, k),
                (Role::Workers, w),
            ]),
            processes: 4,
        };
        let d = at(1_000, 2_000, 3_000, 50_000).per_call(&at(11_000, 4_000, 3_000, 10_000), 10);
        assert_eq!(d.gateway_us, 1.0);
        assert_eq!(d.executor_us, 0.2);
        assert_eq!(d.keyvault_us, 0.0);
        assert_eq!(d.workers_us, 0.0, "retired workers do not count negative");
        assert!((d.total_us - 1.2).abs() < 1e-9);
    }
}
