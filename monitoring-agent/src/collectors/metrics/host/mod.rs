//! The host metrics source: samples this machine every `system_interval_secs` and
//! puts the sample into the ring buffer.
//!
//! Metrics never block the host: a sample is offered with
//! [`RingBuffer::try_send_all`], never awaited. Under `when_full = "block"` a sample
//! that does not fit is skipped whole and counted
//! (`monitoring_agent_host_skipped_samples_total`; the buffer counts its events in
//! `monitoring_agent_events_dropped_total{reason="sample_skipped",
//! source="host_metrics"}`); under the drop
//! policies the buffer's policy applies as for any event. Host metrics are untracked:
//! nothing waits on their acknowledgement.
//!
//! The first sample is taken one second after start (CPU usage needs two readings),
//! then one every interval. Sampling runs on the blocking pool because it reads
//! `/proc` and calls `statvfs`.

mod processes;
#[cfg(target_os = "linux")]
mod procfs;
#[cfg(all(test, target_os = "linux"))]
mod procfs_tests;
mod sample;

use std::time::Duration;

use monitoring_common::event::Labels;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

pub use sample::{HostError, HostSampler, SOURCE, info_event, info_labels};

use super::MetricsConfig;
use crate::buffer::{RingBuffer, TrySendOutcome};
use crate::collectors::sampled::offer;
use crate::pipeline::Source;
use crate::telemetry::HostMetrics;

/// Delay before the first sample: long enough for a meaningful CPU reading.
const FIRST_SAMPLE_AFTER: Duration = Duration::from_secs(1);

/// Errors of the host metrics source.
#[derive(Debug, thiserror::Error)]
pub enum HostSourceError {
    /// sysinfo could not be initialised.
    #[error(transparent)]
    Init(#[from] HostError),
    /// A sampling task panicked or was cancelled by the runtime.
    #[error("the host metrics sampling task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Puts one `host_info` sample into `output` at once. The collector labels an
/// agent's log lines with the host its latest `host_info` names, so the agent calls
/// this before its log sources start: the lines of the start-up burst, read before
/// the first full sample, are labelled too.
pub fn announce(tags: &Labels, output: &RingBuffer) {
    let event = info_event(info_labels(tags));
    // The buffer is empty at start; if not, the first sample carries the same labels.
    if !matches!(
        offer(output, Source::HostMetrics, vec![event]),
        Ok(TrySendOutcome::Sent)
    ) {
        debug!(message = "No room for the host_info announcement; the first sample has it.");
    }
}

/// Samples until `stop` is cancelled or the buffer is closed.
pub async fn run(
    config: MetricsConfig,
    tags: Labels,
    output: RingBuffer,
    metrics: HostMetrics,
    stop: CancellationToken,
) -> Result<(), HostSourceError> {
    let mut sampler = tokio::task::spawn_blocking(move || {
        HostSampler::new(tags, config.top_processes, config.tcp_states)
    })
    .await??;
    let period = Duration::from_secs(config.system_interval_secs.max(1));
    info!(
        message = "Host metrics source started.",
        interval_secs = period.as_secs(),
        hostname = sampler
            .info()
            .get("hostname")
            .map_or("unknown", String::as_str),
    );
    let mut ticker = tokio::time::interval_at(Instant::now() + FIRST_SAMPLE_AFTER, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let started = std::time::Instant::now();
        let (back, events) = tokio::task::spawn_blocking(move || {
            let events = sampler.sample();
            (sampler, events)
        })
        .await?;
        sampler = back;
        metrics
            .collection_seconds
            .observe(started.elapsed().as_secs_f64());
        let n = events.len();
        match offer(&output, Source::HostMetrics, events) {
            Ok(TrySendOutcome::Sent) => {
                metrics.collections.inc();
                debug!(message = "Host metrics sampled.", events = n);
            }
            Ok(TrySendOutcome::Skipped) => {
                metrics.skipped_samples.inc();
            }
            Ok(TrySendOutcome::Partial(_)) => {
                metrics.collections.inc();
            }
            Err(_closed) => break,
        }
    }
    debug!(message = "Host metrics source stopped.");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use monitoring_common::EventKind;

    use crate::buffer::WhenFull;
    use crate::telemetry::{DropReason, Telemetry};

    #[tokio::test]
    async fn samples_go_into_the_buffer_and_stop_on_cancel() {
        let t = Telemetry::new();
        let buffer = RingBuffer::new(10_000, WhenFull::Block, t.buffer.clone());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            MetricsConfig::default(),
            Labels::new(),
            buffer.clone(),
            t.host.clone(),
            stop.clone(),
        ));
        let mut out = Vec::new();
        let got = tokio::time::timeout(Duration::from_secs(10), buffer.recv_many(&mut out, 10_000))
            .await
            .unwrap();
        assert!(got.unwrap() > 10);
        assert!(out.iter().all(|e| e.ack.is_none()
            && e.to_event().unwrap().source == SOURCE
            && e.source == Source::HostMetrics));
        stop.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(t.host.collections.get(), 1);
    }

    #[tokio::test]
    async fn the_announcement_is_one_host_info_with_tags_and_hostname() {
        let t = Telemetry::new();
        let buffer = RingBuffer::new(10, WhenFull::Block, t.buffer.clone());
        let tags = Labels::from([("env".to_string(), "prod".to_string())]);
        announce(&tags, &buffer);
        let mut out = Vec::new();
        assert_eq!(buffer.recv_many(&mut out, 10).await, Some(1));
        let event = out[0].to_event().unwrap();
        let EventKind::Metric(metric) = &event.kind else {
            panic!("not a metric: {event:?}");
        };
        assert_eq!(metric.name, "host_info");
        assert_eq!(event.labels["env"], "prod");
        assert!(!event.labels["hostname"].is_empty());
        assert_eq!(out[0].source, Source::HostMetrics);
    }

    #[tokio::test]
    async fn a_full_blocking_buffer_skips_the_sample_instead_of_waiting() {
        let t = Telemetry::new();
        let buffer = RingBuffer::new(5, WhenFull::Block, t.buffer.clone());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            MetricsConfig::default(),
            Labels::new(),
            buffer.clone(),
            t.host.clone(),
            stop.clone(),
        ));
        tokio::time::timeout(Duration::from_secs(10), async {
            while t.host.skipped_samples.get() == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        assert!(buffer.is_empty(), "a skipped sample sends nothing");
        let skipped = t
            .dropped
            .get_source(DropReason::SampleSkipped, Source::HostMetrics);
        assert!(skipped > 5, "{skipped}");
        assert_eq!(t.dropped.get(DropReason::SampleSkipped), skipped);
        assert_eq!(t.sources.read.get(Source::HostMetrics), skipped);
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
