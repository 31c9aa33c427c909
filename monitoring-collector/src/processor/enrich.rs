//! Enrichment: labels from what is known of the sending agent, added to its log
//! events.
//!
//! Log lines arrive without labels (a file line has no notion of its host), while
//! the agent's `host_info` metric carries its hostname and tags. Each agent's
//! labels are cached here: learnt from `host_info` samples as batches pass through
//! the processor, and seeded once at start from the store's inventory, so enriching
//! costs one map lookup per batch and never a query. The cache holds at most
//! [`MAX_AGENTS`] agents and [`MAX_LABELS`] labels each.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use monitoring_common::event::Labels;
use monitoring_common::{Event, EventKind};

use crate::storage::Store;

/// Agents whose labels are cached; past it, a new agent replaces an arbitrary one.
pub const MAX_AGENTS: usize = 65_536;
/// Labels per agent added to its log events (`host` first, then tags).
pub const MAX_LABELS: usize = 16;
/// Longest label name or value taken from an agent's tags.
const MAX_LABEL_BYTES: usize = 256;

/// The metric whose labels describe the agent's host.
const HOST_INFO: &str = "host_info";
/// `host_info` labels that are inventory, not tags: kept out of log labels.
const INVENTORY_KEYS: [&str; 6] = [
    "hostname",
    "os",
    "os_version",
    "kernel_version",
    "arch",
    "agent_version",
];

/// Labels to add to each agent's log events. Shared by the workers.
#[derive(Default)]
pub struct Enricher {
    agents: RwLock<HashMap<Arc<str>, Arc<Labels>>>,
}

impl Enricher {
    /// An enricher seeded with the hostnames of the agents `store` knows. A failing
    /// store only means an empty start: labels are learnt from the next `host_info`.
    pub fn seeded(store: &dyn Store) -> Enricher {
        let enricher = Enricher::default();
        match store.agents() {
            Ok(agents) => {
                let mut map = enricher.write();
                for agent in agents.into_iter().take(MAX_AGENTS) {
                    if let Some(host) = agent.hostname.filter(|h| valid(h)) {
                        let labels = Labels::from([("host".to_string(), host)]);
                        map.insert(agent.id.into(), Arc::new(labels));
                    }
                }
            }
            Err(error) => {
                tracing::warn!(message = "Failed to read the agent inventory; log labels will be learnt from new host info.", %error);
            }
        }
        enricher
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<Labels>>> {
        self.agents.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Learns from a batch's latest `host_info`, then adds the agent's labels to the
    /// batch's log events where they lack them.
    pub fn enrich(&self, agent: &Arc<str>, events: &mut [Event]) {
        let info = events
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::Metric(m) if m.name == HOST_INFO))
            .max_by_key(|e| e.timestamp_ns)
            .map(|e| labels_of(&e.labels));
        let labels = match info {
            Some(labels) => {
                let labels = Arc::new(labels);
                let mut map = self.write();
                if map.len() >= MAX_AGENTS
                    && !map.contains_key(agent)
                    && let Some(victim) = map.keys().next().cloned()
                {
                    map.remove(&victim);
                }
                map.insert(Arc::clone(agent), Arc::clone(&labels));
                labels
            }
            None => {
                let map = self.agents.read().unwrap_or_else(PoisonError::into_inner);
                match map.get(agent) {
                    Some(labels) => Arc::clone(labels),
                    None => return,
                }
            }
        };
        if labels.is_empty() {
            return;
        }
        for event in events.iter_mut() {
            if matches!(event.kind, EventKind::Log(_)) {
                for (k, v) in labels.iter() {
                    if !event.labels.contains_key(k) {
                        event.labels.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
}

fn valid(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_LABEL_BYTES && s != "unknown"
}

/// `host` from the hostname, then the agent's tags (what is not inventory), capped.
fn labels_of(info: &Labels) -> Labels {
    let mut labels = Labels::new();
    if let Some(host) = info.get("hostname").filter(|h| valid(h)) {
        labels.insert("host".to_string(), host.clone());
    }
    let tags = info.iter().filter(|(k, v)| {
        !INVENTORY_KEYS.contains(&k.as_str()) && valid(k) && v.len() <= MAX_LABEL_BYTES
    });
    for (k, v) in tags {
        if labels.len() >= MAX_LABELS {
            break;
        }
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitoring_common::MetricValue;

    fn host_info(ts: i64, hostname: &str) -> Event {
        let labels = Labels::from([
            ("hostname".to_string(), hostname.to_string()),
            ("os".to_string(), "Debian".to_string()),
            ("env".to_string(), "prod".to_string()),
        ]);
        Event::metric(
            ts,
            "host",
            HOST_INFO,
            labels,
            MetricValue::Gauge { value: 1.0 },
        )
    }

    #[test]
    fn learns_host_and_tags_from_host_info_and_keeps_the_events_own_labels() {
        let enricher = Enricher::default();
        let agent: Arc<str> = "a1".into();
        // Unknown agent, no host_info: nothing added.
        let mut events = vec![Event::log(1, "f", "x")];
        enricher.enrich(&agent, &mut events);
        assert!(events[0].labels.is_empty());
        // The latest host_info in the batch wins.
        let mut own = Event::log(1, "f", "y");
        own.labels.insert("host".into(), "container-7".into());
        let mut events = vec![
            host_info(2, "new"),
            host_info(1, "old"),
            Event::log(1, "f", "x"),
            own,
        ];
        enricher.enrich(&agent, &mut events);
        let want = Labels::from([("env".into(), "prod".into()), ("host".into(), "new".into())]);
        assert_eq!(events[2].labels, want);
        assert_eq!(events[3].labels["host"], "container-7");
        // Metrics keep their own labels (host_info is not given a host label).
        assert!(!events[0].labels.contains_key("host"));
        // Later batches without host_info use the cache.
        let mut events = vec![Event::log(3, "f", "z")];
        enricher.enrich(&agent, &mut events);
        assert_eq!(events[0].labels, want);
        // Another agent is not confused with this one.
        let mut events = vec![Event::log(3, "f", "z")];
        enricher.enrich(&"a2".into(), &mut events);
        assert!(events[0].labels.is_empty());
    }

    #[test]
    fn labels_are_capped() {
        let mut info: Labels = (0..100)
            .map(|i| (format!("tag{i:03}"), "v".to_string()))
            .collect();
        info.insert("hostname".into(), "h".into());
        info.insert("x".repeat(1000), "long".into());
        let labels = labels_of(&info);
        assert_eq!(labels.len(), MAX_LABELS);
        assert_eq!(labels["host"], "h");
    }
}
