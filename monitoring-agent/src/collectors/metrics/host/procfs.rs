//! Linux host metrics that sysinfo does not give, read straight from `/proc`: disk
//! I/O per device, network errors and drops, TCP connections by state, open file
//! descriptors, pressure-stall information and the runnable / blocked task counts.
//!
//! Each reader is a pure parser of one file's text (tested on real samples of
//! those files) plus one read. A file that is missing (an old kernel without PSI, a
//! container without `/proc/net/tcp6`) yields nothing, never an error: a sample is
//! made of what the machine has.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use super::sample::Samples;

/// Bytes in the sectors `/proc/diskstats` counts in (always 512, whatever the device).
const SECTOR_BYTES: f64 = 512.0;

/// The I/O totals of one block device.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskTotals {
    /// Reads completed.
    pub reads: u64,
    /// Writes completed.
    pub writes: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// Milliseconds the device had I/O in flight (for utilisation).
    pub io_ms: u64,
}

/// Whole-disk totals by device name from `/proc/diskstats`. Partitions, loop, RAM
/// and floppy devices are skipped: `is_disk` says which names are whole disks
/// (`/sys/block/<name>` exists for those).
pub fn parse_diskstats(text: &str, is_disk: impl Fn(&str) -> bool) -> BTreeMap<String, DiskTotals> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        // major minor name, then at least the 11 classic fields.
        if f.len() < 14 {
            continue;
        }
        let name = f[2];
        if ["loop", "ram", "zram", "fd"]
            .iter()
            .any(|p| name.starts_with(p))
            || !is_disk(name)
        {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        out.insert(
            name.to_owned(),
            DiskTotals {
                reads: n(3),
                read_bytes: n(5).saturating_mul(SECTOR_BYTES as u64),
                writes: n(7),
                written_bytes: n(9).saturating_mul(SECTOR_BYTES as u64),
                io_ms: n(12),
            },
        );
    }
    out
}

/// Receive and transmit errors and drops of one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetErrors {
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_drops: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Packets dropped on transmit.
    pub tx_drops: u64,
}

/// Errors and drops by interface from `/proc/net/dev`.
pub fn parse_net_dev(text: &str) -> BTreeMap<String, NetErrors> {
    let mut out = BTreeMap::new();
    // Two header lines, then `name: rx bytes packets errs drop fifo frame compressed
    // multicast tx bytes packets errs drop ...`.
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = rest
            .split_ascii_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        if f.len() < 12 {
            continue;
        }
        out.insert(
            name.trim().to_owned(),
            NetErrors {
                rx_errors: f[2],
                rx_drops: f[3],
                tx_errors: f[10],
                tx_drops: f[11],
            },
        );
    }
    out
}

/// The kernel's TCP states in `/proc/net/tcp`, by their hexadecimal code.
const TCP_STATES: [(&str, &str); 12] = [
    ("01", "established"),
    ("02", "syn_sent"),
    ("03", "syn_recv"),
    ("04", "fin_wait1"),
    ("05", "fin_wait2"),
    ("06", "time_wait"),
    ("07", "close"),
    ("08", "close_wait"),
    ("09", "last_ack"),
    ("0A", "listen"),
    ("0B", "closing"),
    ("0C", "new_syn_recv"),
];

/// Adds the connections of one `/proc/net/tcp` or `/proc/net/tcp6` text to `counts`,
/// by state name. Every state is present (at zero) so that series do not come and go.
pub fn count_tcp_states(text: &str, counts: &mut BTreeMap<&'static str, u64>) {
    for (_, name) in TCP_STATES {
        counts.entry(name).or_insert(0);
    }
    for line in text.lines().skip(1) {
        let Some(state) = line.split_ascii_whitespace().nth(3) else {
            continue;
        };
        if let Some((_, name)) = TCP_STATES
            .iter()
            .find(|(code, _)| code.eq_ignore_ascii_case(state))
        {
            *counts.entry(name).or_insert(0) += 1;
        }
    }
}

/// `CurrEstab` of the `Tcp:` table in `/proc/net/snmp` (a header line of names,
/// then a line of values).
pub fn parse_snmp_curr_estab(text: &str) -> Option<u64> {
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let i = names
        .split_ascii_whitespace()
        .position(|n| n == "CurrEstab")?;
    values.split_ascii_whitespace().nth(i)?.parse().ok()
}

/// The `tw` count of the `TCP:` line of `/proc/net/sockstat` (sockets in
/// TIME_WAIT, IPv4 and IPv6).
pub fn parse_sockstat_time_wait(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_ascii_whitespace();
    while let Some(word) = words.next() {
        if word == "tw" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// Allocated and maximum file handles from `/proc/sys/fs/file-nr`
/// (`allocated unused max`).
pub fn parse_file_nr(text: &str) -> Option<(u64, u64)> {
    let f: Vec<u64> = text
        .split_ascii_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    match f.as_slice() {
        [allocated, _unused, max] => Some((*allocated, *max)),
        _ => None,
    }
}

/// One line of a `/proc/pressure/*` file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pressure {
    /// Percentage of the last 10 s some (or all, for `full`) tasks stalled.
    pub avg10: f64,
    /// The same over 60 s.
    pub avg60: f64,
    /// Total stall time, in microseconds.
    pub total_us: u64,
}

/// The `some` and `full` lines of a pressure file, by kind.
pub fn parse_pressure(text: &str) -> Vec<(&str, Pressure)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(kind @ ("some" | "full")) = words.next() else {
            continue;
        };
        let fields: HashMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
        let (Some(avg10), Some(avg60), Some(total)) = (
            fields.get("avg10").and_then(|v| v.parse().ok()),
            fields.get("avg60").and_then(|v| v.parse().ok()),
            fields.get("total").and_then(|v| v.parse().ok()),
        ) else {
            continue;
        };
        out.push((
            kind,
            Pressure {
                avg10,
                avg60,
                total_us: total,
            },
        ));
    }
    out
}

/// `procs_running` and `procs_blocked` (tasks in uninterruptible sleep, usually
/// waiting for I/O) from `/proc/stat`.
pub fn parse_stat_procs(text: &str) -> (Option<u64>, Option<u64>) {
    let mut running = None;
    let mut blocked = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("procs_running ") {
            running = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("procs_blocked ") {
            blocked = v.trim().parse().ok();
        }
    }
    (running, blocked)
}

/// A file under `/proc` as text; `None` if it cannot be read.
pub fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Whether `name` in `/proc/diskstats` is a whole disk rather than a partition
/// (`/sys/block` spells a `/` in a device name as `!`).
pub fn is_whole_disk(name: &str) -> bool {
    Path::new("/sys/block")
        .join(name.replace('/', "!"))
        .exists()
}

/// Samples the `/proc` metrics; keeps the previous disk totals for rates.
#[derive(Debug)]
pub(super) struct ProcSampler {
    disks: BTreeMap<String, DiskTotals>,
    at: Instant,
    tcp_states: bool,
}

impl ProcSampler {
    /// Takes the first disk reading, so that the first sample has rates. With
    /// `tcp_states`, samples count TCP connections in every state.
    pub(super) fn new(tcp_states: bool) -> ProcSampler {
        ProcSampler {
            disks: disk_totals(),
            at: Instant::now(),
            tcp_states,
        }
    }

    /// `host_tcp_connections`: every state from the full tables if asked, else the
    /// two states the kernel keeps counts of.
    fn sample_tcp(&self, out: &mut Samples) {
        if self.tcp_states {
            let (tcp4, tcp6) = (read("/proc/net/tcp"), read("/proc/net/tcp6"));
            if tcp4.is_some() || tcp6.is_some() {
                let mut counts = BTreeMap::new();
                for text in [tcp4, tcp6].into_iter().flatten() {
                    count_tcp_states(&text, &mut counts);
                }
                for (state, n) in counts {
                    out.push("host_tcp_connections", &[("state", state)], n as f64);
                }
            }
            return;
        }
        // The TCP MIB counts IPv4 and IPv6 connections together.
        if let Some(n) = read("/proc/net/snmp").and_then(|t| parse_snmp_curr_estab(&t)) {
            out.push(
                "host_tcp_connections",
                &[("state", "established")],
                n as f64,
            );
        }
        if let Some(n) = read("/proc/net/sockstat").and_then(|t| parse_sockstat_time_wait(&t)) {
            out.push("host_tcp_connections", &[("state", "time_wait")], n as f64);
        }
    }

    /// Adds this sample's `/proc` metrics to `out`.
    pub(super) fn sample(&mut self, out: &mut Samples) {
        self.sample_disks(out);
        for (interface, e) in read("/proc/net/dev")
            .map(|t| parse_net_dev(&t))
            .unwrap_or_default()
        {
            let labels = [("interface", interface.as_str())];
            out.push_counter(
                "host_network_receive_errors_total",
                &labels,
                e.rx_errors as f64,
            );
            out.push_counter(
                "host_network_receive_drops_total",
                &labels,
                e.rx_drops as f64,
            );
            out.push_counter(
                "host_network_transmit_errors_total",
                &labels,
                e.tx_errors as f64,
            );
            out.push_counter(
                "host_network_transmit_drops_total",
                &labels,
                e.tx_drops as f64,
            );
        }
        self.sample_tcp(out);
        if let Some((allocated, max)) = read("/proc/sys/fs/file-nr").and_then(|t| parse_file_nr(&t))
        {
            out.push("host_file_descriptors_allocated", &[], allocated as f64);
            out.push("host_file_descriptors_max", &[], max as f64);
        }
        for resource in ["cpu", "memory", "io"] {
            let Some(text) = read(&format!("/proc/pressure/{resource}")) else {
                continue;
            };
            for (kind, p) in parse_pressure(&text) {
                let labels = [("resource", resource), ("kind", kind)];
                out.push("host_pressure_avg10_percent", &labels, p.avg10);
                out.push("host_pressure_avg60_percent", &labels, p.avg60);
                out.push_counter(
                    "host_pressure_stall_seconds_total",
                    &labels,
                    p.total_us as f64 / 1e6,
                );
            }
        }
        if let Some(text) = read("/proc/stat") {
            let (running, blocked) = parse_stat_procs(&text);
            if let Some(n) = running {
                out.push("host_processes_running", &[], n as f64);
            }
            if let Some(n) = blocked {
                out.push("host_processes_blocked", &[], n as f64);
            }
        }
    }

    fn sample_disks(&mut self, out: &mut Samples) {
        let now = Instant::now();
        let current = disk_totals();
        let secs = now.duration_since(self.at).as_secs_f64();
        if secs > 0.0 {
            for (device, c) in &current {
                // A device that appeared since, or whose counters went back (reset):
                // no rate this time.
                let Some(p) = self
                    .disks
                    .get(device)
                    .filter(|p| c.reads >= p.reads && c.writes >= p.writes && c.io_ms >= p.io_ms)
                else {
                    continue;
                };
                let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
                let labels = [("device", device.as_str())];
                out.push(
                    "host_disk_read_bytes_per_second",
                    &labels,
                    rate(c.read_bytes, p.read_bytes),
                );
                out.push(
                    "host_disk_write_bytes_per_second",
                    &labels,
                    rate(c.written_bytes, p.written_bytes),
                );
                out.push(
                    "host_disk_reads_per_second",
                    &labels,
                    rate(c.reads, p.reads),
                );
                out.push(
                    "host_disk_writes_per_second",
                    &labels,
                    rate(c.writes, p.writes),
                );
                let busy = rate(c.io_ms, p.io_ms) / 1000.0 * 100.0;
                out.push("host_disk_io_utilization_percent", &labels, busy.min(100.0));
            }
        }
        self.disks = current;
        self.at = now;
    }
}

fn disk_totals() -> BTreeMap<String, DiskTotals> {
    read("/proc/diskstats")
        .map(|t| parse_diskstats(&t, is_whole_disk))
        .unwrap_or_default()
}
