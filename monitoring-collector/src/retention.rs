//! Data retention: asks the store to drop data past `storage.retention_days`, once
//! at start and then hourly, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use monitoring_common::event::now_ns;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::storage::Store;
use crate::telemetry::Metrics;

/// How often retention runs.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// Runs retention every `interval` (the first run at once) until `shutdown`.
pub async fn run(
    store: Arc<dyn Store>,
    metrics: Metrics,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let store = Arc::clone(&store);
        let result = tokio::task::spawn_blocking(move || store.enforce_retention(now_ns())).await;
        match result {
            Ok(Ok(0)) => tracing::debug!(message = "Retention found nothing to drop."),
            Ok(Ok(dropped)) => {
                metrics.retention_partitions_dropped.inc_by(dropped as u64);
                tracing::info!(
                    message = "Dropped expired partitions.",
                    partitions = dropped
                );
            }
            Ok(Err(error)) => {
                metrics.retention_failures.inc();
                tracing::warn!(message = "Failed to enforce retention; will try again.", %error);
            }
            Err(error) => {
                metrics.retention_failures.inc();
                tracing::error!(message = "Retention task failed.", %error);
            }
        }
    }
}
