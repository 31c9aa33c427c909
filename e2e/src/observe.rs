//! What tests read from running processes' `/proc`: memory now and at its peak.

use crate::*;

/// A field of `/proc/<pid>/status` given in kB (`VmHWM`, `VmRSS`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib = value
        .trim()
        .strip_suffix("kB")
        .with_context(|| format!("{field} of {pid} is not in kB: {value:?}"))?;
    Ok(kib.trim().parse()?)
}

/// The peak resident memory of a process so far (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    proc_status_kib(pid, "VmHWM")
}
