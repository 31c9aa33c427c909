//! The scrape loop of one target: fetch, parse, label, emit, every `interval_secs`.
//!
//! Labels follow Prometheus' `honor_labels = false`: every sample gets the target's
//! `job` and `instance` (the URL's `host:port`), then the agent's tags and the
//! target's `labels`; an exposition label that collides with one of those is kept
//! as `exported_<name>`. Like Prometheus, each scrape also yields `up` (1 or 0),
//! `scrape_duration_seconds` and `scrape_samples_scraped` for the target, so that a
//! failing target is visible where its metrics are stored, not only in the agent's
//! log. A failure is logged when it starts or changes, and the recovery once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use monitoring_common::event::{Event, EventKind, Labels, MetricEvent, MetricValue};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::ScrapeConfig;
use super::families::{Sample, parse};
use super::fetch::fetch;

/// A scrape target with the labels every one of its samples gets.
#[derive(Debug, Clone)]
pub struct Target {
    config: ScrapeConfig,
    /// `job`, `instance`, the agent's tags and the configured labels.
    labels: Labels,
}

impl Target {
    /// The target of `config`, with the agent's `tags`.
    pub fn new(config: ScrapeConfig, tags: &Labels) -> Target {
        let instance = config
            .url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| {
                let port = u.port_u16().unwrap_or(match u.scheme_str() {
                    Some("https") => 443,
                    _ => 80,
                });
                u.host().map(|h| format!("{h}:{port}"))
            })
            .unwrap_or_else(|| config.url.clone());
        let mut labels = Labels::new();
        labels.insert("job".into(), config.job.clone());
        labels.insert("instance".into(), instance);
        labels.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels.extend(config.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        Target { config, labels }
    }

    /// The target's URL.
    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// Scrapes once: the target's samples and its `up` series, and the error if the
    /// scrape failed (then only the `up` series, with `up = 0`).
    pub async fn scrape(&self) -> (Vec<Event>, Option<String>) {
        let started = std::time::Instant::now();
        let now_ns = unix_nanos(SystemTime::now());
        let result = match fetch(&self.config).await {
            Ok(fetched) => parse(&fetched.body, fetched.format, self.config.sample_limit)
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let elapsed = started.elapsed().as_secs_f64();
        let (mut events, error) = match result {
            Ok(samples) => (self.events(samples, now_ns), None),
            Err(error) => (Vec::new(), Some(error)),
        };
        let scraped = events.len() as f64;
        let up = if error.is_none() { 1.0 } else { 0.0 };
        for (name, value) in [
            ("up", up),
            ("scrape_duration_seconds", elapsed),
            ("scrape_samples_scraped", scraped),
        ] {
            events.push(self.event(
                name,
                self.labels.clone(),
                MetricValue::Gauge { value },
                now_ns,
            ));
        }
        (events, error)
    }

    fn events(&self, samples: Vec<Sample>, now_ns: i64) -> Vec<Event> {
        samples
            .into_iter()
            .map(|sample| {
                let mut labels = Labels::new();
                for (name, value) in sample.labels {
                    if self.labels.contains_key(&name) {
                        labels.insert(format!("exported_{name}"), value);
                    } else {
                        labels.insert(name, value);
                    }
                }
                labels.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                let at = sample
                    .timestamp_ms
                    .map_or(now_ns, |ms| ms.saturating_mul(1_000_000));
                self.event(&sample.name, labels, sample.value, at)
            })
            .collect()
    }

    fn event(&self, name: &str, labels: Labels, value: MetricValue, timestamp_ns: i64) -> Event {
        Event {
            timestamp_ns,
            source: self.config.url.clone(),
            labels,
            kind: EventKind::Metric(MetricEvent {
                name: name.to_owned(),
                value,
            }),
        }
    }
}

fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Scrapes `target` every interval (the first time at once) until `stop` is
/// cancelled or `emit` returns `false` (the pipeline is closed).
pub async fn run(
    target: Target,
    mut emit: impl FnMut(Vec<Event>) -> bool,
    stop: CancellationToken,
) {
    let period = Duration::from_secs(target.config.interval_secs.max(1));
    let mut ticker = tokio::time::interval(period);
    // A scrape is a snapshot: after a stall, one now is worth more than a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    info!(message = "Prometheus scrape target started.", url = %target.url(), interval_secs = period.as_secs());
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let (events, error) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            scraped = target.scrape() => scraped,
        };
        match (&error, &last_error) {
            (Some(now), before) if before.as_ref() != Some(now) => {
                warn!(message = "Prometheus scrape failed; up = 0 until it succeeds.", url = %target.url(), error = %now);
            }
            (None, Some(_)) => {
                info!(message = "Prometheus scrape succeeds again.", url = %target.url())
            }
            _ => {}
        }
        last_error = error;
        if !emit(events) {
            break;
        }
    }
    info!(message = "Prometheus scrape target stopped.", url = %target.url());
}
