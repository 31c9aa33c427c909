//! The top processes by CPU and by memory (`top_processes`), from sysinfo's process
//! table.
//!
//! Each is a gauge labelled with its `rank` (1 is the busiest), `pid` and `name`:
//! the ranks are a fixed set of series, and the pid and name say who holds them now.
//! CPU is a percentage of one core since the previous sample (a process using two
//! cores shows 200), as `top` shows it.

use std::cmp::Ordering;

use sysinfo::{Process, ProcessRefreshKind, ProcessesToUpdate, System};

use super::sample::Samples;

/// Refreshes the process table and adds the top `n` by CPU and by memory to `out`;
/// the number of processes.
pub(super) fn sample_top(system: &mut System, n: usize, out: &mut Samples) -> usize {
    // Without tasks: sysinfo otherwise reads /proc/PID/task/* and lists every thread
    // as a process, which on a host with thousands of threads (JVMs, databases) is
    // most of an idle agent's CPU.
    system.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing()
            .with_cpu()
            .with_memory()
            .without_tasks(),
    );
    let mut processes: Vec<&Process> = system.processes().values().collect();
    // Count and rank each process once, should a thread be listed all the same.
    processes.retain(|p| p.thread_kind().is_none());
    let count = processes.len();
    let mut push = |metric: &str, ranked: &[&Process], value: &dyn Fn(&Process) -> f64| {
        for (rank, p) in ranked.iter().take(n).enumerate() {
            let rank = (rank + 1).to_string();
            let pid = p.pid().to_string();
            let name = p.name().to_string_lossy();
            out.push(
                metric,
                &[("rank", &rank), ("pid", &pid), ("name", &name)],
                value(p),
            );
        }
    };
    processes.sort_by(|a, b| {
        b.cpu_usage()
            .partial_cmp(&a.cpu_usage())
            .unwrap_or(Ordering::Equal)
    });
    push("host_process_top_cpu_percent", &processes, &|p| {
        f64::from(p.cpu_usage())
    });
    processes.sort_by_key(|p| std::cmp::Reverse(p.memory()));
    push("host_process_top_memory_bytes", &processes, &|p| {
        p.memory() as f64
    });
    count
}
