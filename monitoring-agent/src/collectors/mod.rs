//! Sources of events: logs (tailed files) and metrics (host statistics).

pub mod logs;
pub mod metrics;
