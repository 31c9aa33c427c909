//! The sources that take samples and never wait for the pipeline: host metrics,
//! Prometheus scrape targets and packet capture. They start and stop together, on a
//! token of their own, so that a reload of their tables restarts them all.
//!
//! Their events are untracked (nothing is checkpointed) and offered whole with
//! [`offer`]: under `when_full = "block"` a sample that does not fit is skipped and
//! counted, since waiting would only make the next sample late (or, for a capture,
//! make the kernel drop packets).

use monitoring_common::Event;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::metrics::{host, prometheus};
use crate::buffer::{RingBuffer, TrySendOutcome};
use crate::config::AgentConfig;
use crate::pipeline::{Closed, Envelope, Source};
use crate::telemetry::Telemetry;

/// Hands over a whole sample of `source` without waiting; logs what did not fit
/// (the ring buffer counts it as read and dropped).
pub fn offer(
    output: &RingBuffer,
    source: Source,
    events: Vec<Event>,
) -> Result<TrySendOutcome, Closed> {
    let n = events.len();
    let envelopes = events
        .into_iter()
        .map(|e| Envelope::untracked(source, e))
        .collect();
    let outcome = output.try_send_all(envelopes)?;
    match outcome {
        TrySendOutcome::Sent => {}
        TrySendOutcome::Skipped => {
            warn!(
                message = "Skipped a sample: the buffer is full.",
                source = source.as_str(),
                events = n
            );
        }
        TrySendOutcome::Partial(missing) => {
            warn!(
                message = "Part of a sample did not fit in the buffer.",
                source = source.as_str(),
                dropped = missing
            );
        }
    }
    Ok(outcome)
}

/// The running sampled sources.
#[derive(Debug)]
pub struct SampledSources {
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    stop: CancellationToken,
}

impl SampledSources {
    /// Starts host metrics (if enabled), one task per Prometheus target and the
    /// packet capture (if enabled); they stop with `stop_reading`.
    pub fn spawn(
        config: &AgentConfig,
        buffer: &RingBuffer,
        telemetry: &Telemetry,
        stop_reading: &CancellationToken,
    ) -> SampledSources {
        let stop = stop_reading.child_token();
        let tags = &config.agent.tags;
        let mut tasks = Vec::new();
        let metrics = &config.collectors.metrics;
        if metrics.enabled {
            let run = host::run(
                metrics.clone(),
                tags.clone(),
                buffer.clone(),
                telemetry.host.clone(),
                stop.clone(),
            );
            tasks.push((
                "host metrics",
                tokio::spawn(async move {
                    if let Err(error) = run.await {
                        error!(message = "Host metrics source failed; the agent goes on without it.", %error);
                    }
                }),
            ));
        }
        for target in &metrics.prometheus {
            let target = prometheus::Target::new(target.clone(), tags);
            let output = buffer.clone();
            let emit = move |events| offer(&output, Source::Prometheus, events).is_ok();
            tasks.push((
                "prometheus target",
                tokio::spawn(prometheus::run(target, emit, stop.clone())),
            ));
        }
        #[cfg(feature = "pcap")]
        if config.collectors.traffic.enabled {
            let (traffic, tags, output, stop) = (
                config.collectors.traffic.clone(),
                tags.clone(),
                buffer.clone(),
                stop.clone(),
            );
            tasks.push((
                "traffic capture",
                tokio::task::spawn_blocking(move || {
                    let emit = |events| offer(&output, Source::Traffic, events).is_ok();
                    if let Err(error) = super::traffic::capture::run(&traffic, &tags, emit, &stop) {
                        error!(message = "Packet capture failed; the agent goes on without it.", %error);
                    }
                }),
            ));
        }
        SampledSources { tasks, stop }
    }

    /// Stops every source and waits for them.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        for (name, task) in self.tasks.drain(..) {
            if let Err(error) = task.await {
                error!(message = "A sampled source's task failed.", source = name, %error);
            }
        }
    }
}
