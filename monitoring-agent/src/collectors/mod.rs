//! Sources of events: logs (tailed files), metrics (host statistics, Prometheus
//! scrapes) and traffic (flows from packet capture).

pub mod logs;
pub mod metrics;
pub mod sampled;
pub mod traffic;
