//! What a committed batch changes in the agent inventory and the metric-name
//! catalogue, picked out once for every store.

use std::collections::{BTreeMap, HashSet};

use monitoring_common::{EventKind, MetricEvent};

use crate::storage::IngestBatch;

/// Metric carrying the host's identity in its labels.
const HOST_INFO: &str = "host_info";
/// Metric whose `cpu="total"` series is the agent's CPU usage.
const CPU: &str = "host_cpu_usage_percent";
/// Metric giving the agent's memory usage.
const MEMORY: &str = "host_memory_usage_percent";

/// What a batch changes in the inventory and catalogue.
#[derive(Debug, Default)]
pub struct InventoryUpdate<'a> {
    /// Latest `host_info`: its time and labels (hostname, os, os_version, kernel_version, arch).
    pub info: Option<(i64, &'a BTreeMap<String, String>)>,
    /// Latest total CPU usage sample.
    pub cpu: Option<(i64, f64)>,
    /// Latest memory usage sample.
    pub memory: Option<(i64, f64)>,
    /// Metric names in the batch with their kind, each once.
    pub names: Vec<(&'a str, &'static str)>,
}

impl<'a> InventoryUpdate<'a> {
    /// Picks out of `batch` the latest host info, CPU and memory samples and the
    /// metric names in it.
    pub fn from_batch(batch: &'a IngestBatch) -> Self {
        fn later(have: &mut Option<(i64, f64)>, ts: i64, v: f64) {
            if !v.is_nan() && have.is_none_or(|(t, _)| ts >= t) {
                *have = Some((ts, v));
            }
        }
        let mut update = InventoryUpdate::default();
        let mut seen: HashSet<&str> = HashSet::new();
        for event in &batch.events {
            let EventKind::Metric(MetricEvent { name, value }) = &event.kind else {
                continue;
            };
            let ts = event.timestamp_ns;
            match name.as_str() {
                HOST_INFO if update.info.is_none_or(|(t, _)| ts >= t) => {
                    update.info = Some((ts, &event.labels));
                }
                CPU if event.labels.get("cpu").map(String::as_str) == Some("total") => {
                    later(&mut update.cpu, ts, value.scalar());
                }
                MEMORY => later(&mut update.memory, ts, value.scalar()),
                _ => {}
            }
            if seen.insert(name) {
                update.names.push((name, value.kind_name()));
            }
        }
        update
    }

    /// The `os` column: `os` and `os_version` of the host info, joined.
    pub fn os(&self) -> Option<String> {
        let (_, labels) = self.info?;
        let get = |k: &str| labels.get(k).map(String::as_str);
        match (get("os"), get("os_version")) {
            (Some(os), Some(v)) if !v.is_empty() => Some(format!("{os} {v}")),
            (os, _) => os.map(str::to_string),
        }
    }
}
