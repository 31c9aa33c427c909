//! One host metric sample: reads sysinfo and turns it into metric events.
//!
//! One [`HostSampler`] lives for the whole run and refreshes only what it reports, so
//! a sample costs a few reads of `/proc` and one `statvfs` per mount. Rates (network)
//! are computed from the difference of the interface totals over the elapsed time,
//! so they need two samples: the sampler takes the first reading when it is built.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use monitoring_common::event::{Labels, now_ns};
use monitoring_common::{Event, MetricValue};
use sysinfo::{DiskRefreshKind, Disks, Networks, System};

/// The `source` of every host metric event.
pub const SOURCE: &str = "host";

/// File systems that hold no user data; sysinfo skips most pseudo file systems on
/// Linux already, this catches the rest (and other platforms').
const PSEUDO_FILESYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "fuse.lxcfs",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "securityfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Why the sampler could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot read host statistics ({what}): {source}")]
pub struct HostError {
    /// What was being read.
    what: &'static str,
    /// The cause.
    source: sysinfo::Error,
}

#[derive(Debug, Clone, Copy)]
struct NetTotals {
    rx_bytes: u64,
    tx_bytes: u64,
    rx_packets: u64,
    tx_packets: u64,
}

/// Collects host metrics; keep one for the whole run.
pub struct HostSampler {
    system: System,
    disks: Disks,
    networks: Networks,
    previous_net: HashMap<String, NetTotals>,
    previous_at: Instant,
    tags: Labels,
    info: Labels,
    /// How many top processes by CPU and by memory to report (0: none).
    top_processes: usize,
    #[cfg(target_os = "linux")]
    procfs: super::procfs::ProcSampler,
}

impl std::fmt::Debug for HostSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSampler")
            .field("info", &self.info)
            .finish()
    }
}

/// The labels of `host_info`: the agent's tags, then its host's inventory.
pub fn info_labels(tags: &Labels) -> Labels {
    let unknown = |r: Result<String, sysinfo::Error>| r.unwrap_or_else(|_| "unknown".to_string());
    let mut info = tags.clone();
    info.insert("hostname".into(), unknown(System::host_name()));
    info.insert("os".into(), unknown(System::name()));
    info.insert("os_version".into(), unknown(System::os_version()));
    info.insert("kernel_version".into(), unknown(System::kernel_version()));
    info.insert("arch".into(), System::cpu_arch());
    info.insert("agent_version".into(), env!("CARGO_PKG_VERSION").into());
    info
}

/// A `host_info` sample taken now.
pub fn info_event(info: Labels) -> Event {
    Event::metric(
        now_ns(),
        SOURCE,
        "host_info",
        info,
        MetricValue::Gauge { value: 1.0 },
    )
}

impl HostSampler {
    /// A sampler that adds `tags` to every event and reports the `top_processes`
    /// busiest processes, and TCP connections in every state if `tcp_states`. Takes
    /// the first CPU, disk and network readings, so the first
    /// [`HostSampler::sample`] has rates.
    pub fn new(
        tags: Labels,
        top_processes: usize,
        tcp_states: bool,
    ) -> Result<HostSampler, HostError> {
        let err = |what| move |source| HostError { what, source };
        let mut system = System::new().map_err(err("system"))?;
        system.refresh_cpu_usage();
        let disks = Disks::new().map_err(err("disks"))?;
        let networks = Networks::new_with_refreshed_list().map_err(err("network interfaces"))?;
        let previous_net = net_totals(&networks);
        let info = info_labels(&tags);
        Ok(HostSampler {
            system,
            disks,
            networks,
            previous_net,
            previous_at: Instant::now(),
            tags,
            info,
            top_processes,
            #[cfg(target_os = "linux")]
            procfs: super::procfs::ProcSampler::new(tcp_states),
        })
    }

    /// The inventory labels of `host_info`.
    pub fn info(&self) -> &Labels {
        &self.info
    }

    /// Takes one sample. Blocking (it reads `/proc` and calls `statvfs`): run it off
    /// the async workers.
    pub fn sample(&mut self) -> Vec<Event> {
        let now = now_ns();
        let mut out = Samples {
            now,
            tags: self.tags.clone(),
            events: Vec::with_capacity(64),
        };
        out.push_labels("host_info", self.info.clone(), 1.0);

        self.system.refresh_cpu_usage();
        out.push(
            "host_cpu_usage_percent",
            &[("cpu", "total")],
            f64::from(self.system.global_cpu_usage()),
        );
        for (i, cpu) in self.system.cpus().iter().enumerate() {
            out.push(
                "host_cpu_usage_percent",
                &[("cpu", &i.to_string())],
                f64::from(cpu.usage()),
            );
        }

        self.system.refresh_memory();
        let total = self.system.total_memory();
        let used = self.system.used_memory();
        out.push("host_memory_total_bytes", &[], total as f64);
        out.push("host_memory_used_bytes", &[], used as f64);
        out.push(
            "host_memory_available_bytes",
            &[],
            self.system.available_memory() as f64,
        );
        if total > 0 {
            out.push(
                "host_memory_usage_percent",
                &[],
                used as f64 * 100.0 / total as f64,
            );
        }
        out.push(
            "host_swap_total_bytes",
            &[],
            self.system.total_swap() as f64,
        );
        out.push("host_swap_used_bytes", &[], self.system.used_swap() as f64);

        self.sample_filesystems(&mut out);
        self.sample_networks(&mut out);

        if let Ok(load) = System::load_average() {
            out.push("host_load1", &[], load.one);
            out.push("host_load5", &[], load.five);
            out.push("host_load15", &[], load.fifteen);
        }
        if let Ok(uptime) = System::uptime() {
            out.push("host_uptime_seconds", &[], uptime as f64);
        }
        let processes = if self.top_processes > 0 {
            Some(super::processes::sample_top(
                &mut self.system,
                self.top_processes,
                &mut out,
            ))
            .filter(|&n| n > 0)
        } else {
            self.process_count()
        };
        if let Some(n) = processes {
            out.push("host_processes", &[], n as f64);
        }
        #[cfg(target_os = "linux")]
        self.procfs.sample(&mut out);
        out.events
    }

    fn sample_filesystems(&mut self, out: &mut Samples) {
        // Mounts come and go: list them again each time (one read of the mount table).
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        let mut seen = HashSet::new();
        for disk in self.disks.iter() {
            let fstype = disk.file_system().to_string_lossy();
            let total = disk.total_space();
            let mount = disk.mount_point().to_string_lossy();
            if total == 0
                || PSEUDO_FILESYSTEMS.contains(&fstype.as_ref())
                || !seen.insert(mount.to_string())
            {
                continue;
            }
            let available = disk.available_space();
            let device = disk.name().to_string_lossy();
            let labels = [
                ("mount", mount.as_ref()),
                ("device", device.as_ref()),
                ("fstype", fstype.as_ref()),
            ];
            out.push("host_filesystem_total_bytes", &labels, total as f64);
            out.push("host_filesystem_available_bytes", &labels, available as f64);
            out.push(
                "host_filesystem_used_bytes",
                &labels,
                total.saturating_sub(available) as f64,
            );
        }
    }

    fn sample_networks(&mut self, out: &mut Samples) {
        self.networks.refresh(true);
        let now = Instant::now();
        let elapsed = now.duration_since(self.previous_at).as_secs_f64();
        let current = net_totals(&self.networks);
        if elapsed > 0.0 {
            let mut names: Vec<&String> = current.keys().collect();
            names.sort();
            for name in names {
                let (Some(cur), Some(prev)) = (current.get(name), self.previous_net.get(name))
                else {
                    continue;
                };
                let rate = |c: u64, p: u64| c.checked_sub(p).map(|d| d as f64 / elapsed);
                let labels = [("interface", name.as_str())];
                // A counter that went back (interface reset) has no rate this time.
                for (metric, value) in [
                    (
                        "host_network_receive_bytes_per_second",
                        rate(cur.rx_bytes, prev.rx_bytes),
                    ),
                    (
                        "host_network_transmit_bytes_per_second",
                        rate(cur.tx_bytes, prev.tx_bytes),
                    ),
                    (
                        "host_network_receive_packets_per_second",
                        rate(cur.rx_packets, prev.rx_packets),
                    ),
                    (
                        "host_network_transmit_packets_per_second",
                        rate(cur.tx_packets, prev.tx_packets),
                    ),
                ] {
                    if let Some(value) = value {
                        out.push(metric, &labels, value);
                    }
                }
            }
        }
        self.previous_net = current;
        self.previous_at = now;
    }

    fn process_count(&mut self) -> Option<usize> {
        // On Linux, counting /proc's numeric entries is far lighter than sysinfo's
        // process table, which would read and keep every process's details.
        if let Ok(dir) = std::fs::read_dir("/proc") {
            let n = dir
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count();
            if n > 0 {
                return Some(n);
            }
        }
        self.system.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::All,
            true,
            sysinfo::ProcessRefreshKind::nothing().without_tasks(),
        );
        Some(self.system.processes().len()).filter(|&n| n > 0)
    }
}

fn net_totals(networks: &Networks) -> HashMap<String, NetTotals> {
    networks
        .iter()
        .map(|(name, data)| {
            (
                name.to_string_lossy().into_owned(),
                NetTotals {
                    rx_bytes: data.total_received(),
                    tx_bytes: data.total_transmitted(),
                    rx_packets: data.total_packets_received(),
                    tx_packets: data.total_packets_transmitted(),
                },
            )
        })
        .collect()
}

/// The events of one sample, all with one timestamp and the agent's tags.
pub(super) struct Samples {
    now: i64,
    tags: Labels,
    events: Vec<Event>,
}

impl Samples {
    /// Adds a gauge with the tags and `labels` (which win over a tag of that name).
    pub(super) fn push(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels = self.with_tags(labels);
        self.push_value(name, labels, MetricValue::Gauge { value });
    }

    /// Adds a counter (a running total) with the tags and `labels`.
    pub(super) fn push_counter(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels = self.with_tags(labels);
        self.push_value(name, labels, MetricValue::Counter { value });
    }

    fn with_tags(&self, labels: &[(&str, &str)]) -> Labels {
        let mut all = self.tags.clone();
        for (k, v) in labels {
            all.insert((*k).to_string(), (*v).to_string());
        }
        all
    }

    fn push_labels(&mut self, name: &str, labels: Labels, value: f64) {
        self.push_value(name, labels, MetricValue::Gauge { value });
    }

    fn push_value(&mut self, name: &str, labels: Labels, value: MetricValue) {
        self.events
            .push(Event::metric(self.now, SOURCE, name, labels, value));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
pub(super) mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use monitoring_common::EventKind;

    use super::*;

    /// Every sample's value by metric name (gauges and counters alike).
    pub(in crate::collectors::metrics::host) fn gauges(
        events: &[Event],
    ) -> BTreeMap<String, Vec<(Labels, f64)>> {
        let mut map: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
        for e in events {
            assert_eq!(e.source, SOURCE);
            let EventKind::Metric(m) = &e.kind else {
                panic!("not a metric: {e:?}")
            };
            let (MetricValue::Gauge { value } | MetricValue::Counter { value }) = m.value else {
                panic!("not a single value: {m:?}")
            };
            assert!(value.is_finite(), "{} = {value}", m.name);
            map.entry(m.name.clone())
                .or_default()
                .push((e.labels.clone(), value));
        }
        map
    }

    #[test]
    fn one_sample_of_this_machine_is_complete_and_sane() {
        let tags: Labels = [("env".to_string(), "test".to_string())].into();
        let mut sampler = HostSampler::new(tags, 3, false).unwrap();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(Duration::from_millis(250)));
        let events = sampler.sample();
        let g = gauges(&events);
        for name in [
            "host_info",
            "host_cpu_usage_percent",
            "host_memory_total_bytes",
            "host_memory_used_bytes",
            "host_memory_available_bytes",
            "host_memory_usage_percent",
            "host_swap_total_bytes",
            "host_swap_used_bytes",
            "host_filesystem_total_bytes",
            "host_filesystem_available_bytes",
            "host_filesystem_used_bytes",
            "host_load1",
            "host_load5",
            "host_load15",
            "host_uptime_seconds",
            "host_processes",
            "host_process_top_cpu_percent",
            "host_process_top_memory_bytes",
        ] {
            assert!(g.contains_key(name), "missing {name}; got {:?}", g.keys());
        }
        // Every event carries the agent's tags.
        assert!(
            events
                .iter()
                .all(|e| e.labels.get("env").map(String::as_str) == Some("test"))
        );

        let cpus = &g["host_cpu_usage_percent"];
        assert!(cpus.iter().any(|(l, _)| l["cpu"] == "total"));
        assert!(cpus.iter().any(|(l, _)| l["cpu"] == "0"));
        assert!(cpus.iter().all(|(_, v)| (0.0..=100.0 + 1e-6).contains(v)));

        let total = g["host_memory_total_bytes"][0].1;
        assert!(total > 1e6);
        assert!(g["host_memory_used_bytes"][0].1 <= total);
        assert!((0.0..=100.0).contains(&g["host_memory_usage_percent"][0].1));

        let root = g["host_filesystem_total_bytes"]
            .iter()
            .find(|(l, _)| l["mount"] == "/")
            .expect("the root file system is reported");
        assert!(root.1 > 0.0 && !root.0["fstype"].is_empty() && root.0.contains_key("device"));
        assert!(
            g["host_filesystem_total_bytes"]
                .iter()
                .all(|(l, _)| !PSEUDO_FILESYSTEMS.contains(&l["fstype"].as_str()))
        );

        assert!(g["host_uptime_seconds"][0].1 > 0.0);
        assert!(g["host_processes"][0].1 >= 1.0);
        assert!(g["host_load1"][0].1 >= 0.0);
        let top = &g["host_process_top_memory_bytes"];
        assert_eq!(top.len(), 3, "three ranks asked for");
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "ranked: {top:?}");
        assert!(
            top.iter()
                .all(|(l, _)| !l["pid"].is_empty() && l.contains_key("name"))
        );
        // User threads are neither read nor listed (the test harness runs this one on
        // a thread of its own, so there is at least one to leave out); kernel threads
        // are entries of /proc like processes.
        assert!(
            sampler
                .system
                .processes()
                .values()
                .all(|p| p.thread_kind() != Some(sysinfo::ThreadKind::Userland))
        );

        let info = &g["host_info"];
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].1, 1.0);
        for key in [
            "hostname",
            "os",
            "os_version",
            "kernel_version",
            "arch",
            "agent_version",
        ] {
            assert!(info[0].0.contains_key(key), "host_info lacks {key}");
        }
    }

    #[test]
    fn network_rates_come_from_two_readings() {
        let mut sampler = HostSampler::new(Labels::new(), 0, false).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let g = gauges(&sampler.sample());
        if sampler.networks.is_empty() {
            return; // no interfaces visible (an unusual sandbox): nothing to rate
        }
        for name in [
            "host_network_receive_bytes_per_second",
            "host_network_transmit_bytes_per_second",
            "host_network_receive_packets_per_second",
            "host_network_transmit_packets_per_second",
        ] {
            let series = g.get(name).unwrap_or_else(|| panic!("missing {name}"));
            assert!(
                series
                    .iter()
                    .all(|(l, v)| l.contains_key("interface") && *v >= 0.0)
            );
        }
    }
}
