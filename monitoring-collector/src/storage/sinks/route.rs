//! Routing: which events of a batch a sink takes, by kind (`kinds`) and, for logs,
//! by severity (`min_severity`).
//!
//! Most sinks take everything, so the common case must cost nothing: the batch is
//! shared as it is, and a copy with the events that pass is made only when some
//! are filtered out. A batch with nothing left is not offered to the sink at all.

use std::sync::Arc;

use monitoring_common::event::UnknownSeverity;
use monitoring_common::{Event, EventKind, Severity};

use super::config::{RouteKind, SinkConfig, SinkType};
use crate::storage::IngestBatch;

/// The events one sink takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    logs: bool,
    metrics: bool,
    flows: bool,
    /// Logs less severe than this are filtered out (logs without one pass).
    min_severity: Option<Severity>,
}

impl Route {
    /// Everything.
    pub const ALL: Route = Route {
        logs: true,
        metrics: true,
        flows: true,
        min_severity: None,
    };

    /// The route of a sink: its `kinds` (default: every kind its type can take) and
    /// `min_severity`.
    pub fn new(config: &SinkConfig) -> Result<Route, UnknownSeverity> {
        let takes = |kind| match &config.kinds {
            Some(kinds) => kinds.contains(&kind),
            None => config.kind != SinkType::PrometheusRemoteWrite || kind == RouteKind::Metric,
        };
        Ok(Route {
            logs: takes(RouteKind::Log),
            metrics: takes(RouteKind::Metric),
            flows: takes(RouteKind::Flow),
            min_severity: config.min_severity().transpose()?,
        })
    }

    /// Whether nothing is filtered out.
    fn takes_all(&self) -> bool {
        self.logs && self.metrics && self.flows && self.min_severity.is_none()
    }

    /// Whether the sink takes `event`.
    pub fn takes(&self, event: &Event) -> bool {
        match &event.kind {
            EventKind::Log(log) => {
                self.logs
                    && match (self.min_severity, log.severity) {
                        // Lower codes are more severe (0 = emergency).
                        (Some(floor), Some(severity)) => severity <= floor,
                        _ => true,
                    }
            }
            EventKind::Metric(_) => self.metrics,
            EventKind::Flow(_) => self.flows,
        }
    }

    /// What of `batch` the sink takes: the batch itself when it takes every event,
    /// a copy of the batch with the events it takes when it takes some, `None` when
    /// it takes none.
    pub fn apply(&self, batch: &Arc<IngestBatch>) -> Option<Arc<IngestBatch>> {
        if batch.events.is_empty() {
            return None;
        }
        if self.takes_all() {
            return Some(Arc::clone(batch));
        }
        let taken = batch.events.iter().filter(|e| self.takes(e)).count();
        if taken == batch.events.len() {
            return Some(Arc::clone(batch));
        }
        if taken == 0 {
            return None;
        }
        let mut events = Vec::with_capacity(taken);
        events.extend(batch.events.iter().filter(|e| self.takes(e)).cloned());
        Some(Arc::new(IngestBatch {
            agent_id: Arc::clone(&batch.agent_id),
            stream_id: batch.stream_id,
            sequence: batch.sequence,
            received_ns: batch.received_ns,
            events,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitoring_common::MetricValue;
    use monitoring_common::event::Labels;

    fn config(toml_text: &str) -> SinkConfig {
        toml::from_str(toml_text).expect("valid sink table")
    }

    fn log(severity: Option<Severity>) -> Event {
        let mut event = Event::log(1, "app", "line");
        if let EventKind::Log(l) = &mut event.kind {
            l.severity = severity;
        }
        event
    }

    fn batch(events: Vec<Event>) -> Arc<IngestBatch> {
        Arc::new(IngestBatch {
            agent_id: "a".into(),
            stream_id: 1,
            sequence: 2,
            received_ns: 3,
            events,
        })
    }

    fn gauge() -> Event {
        Event::metric(
            1,
            "host",
            "m",
            Labels::new(),
            MetricValue::Gauge { value: 1.0 },
        )
    }

    #[test]
    fn a_sink_taking_everything_shares_the_batch() {
        let route = Route::new(&config("type = \"blackhole\"")).expect("route");
        assert_eq!(route, Route::ALL);
        let b = batch(vec![log(None), gauge()]);
        let routed = route.apply(&b).expect("something to write");
        assert!(
            Arc::ptr_eq(&b, &routed),
            "copied although nothing was filtered"
        );
        assert!(route.apply(&batch(Vec::new())).is_none());
    }

    #[test]
    fn kinds_filter_and_copy_only_when_something_is_left_out() {
        let route =
            Route::new(&config("type = \"blackhole\"\nkinds = [\"metric\"]")).expect("route");
        let mixed = batch(vec![log(None), gauge(), log(None), gauge()]);
        let routed = route.apply(&mixed).expect("the metrics");
        assert!(!Arc::ptr_eq(&mixed, &routed));
        assert_eq!(routed.events.len(), 2);
        assert!(
            routed
                .events
                .iter()
                .all(|e| matches!(e.kind, EventKind::Metric(_)))
        );
        assert_eq!(
            (
                routed.stream_id,
                routed.sequence,
                routed.received_ns,
                &*routed.agent_id
            ),
            (1, 2, 3, "a")
        );
        let metrics_only = batch(vec![gauge()]);
        assert!(Arc::ptr_eq(
            &metrics_only,
            &route.apply(&metrics_only).expect("kept")
        ));
        assert!(
            route.apply(&batch(vec![log(None)])).is_none(),
            "nothing to write"
        );
    }

    #[test]
    fn remote_write_takes_metrics_by_default() {
        let route = Route::new(&config(
            "type = \"prometheus_remote_write\"\nurl = \"http://127.0.0.1:1/api/v1/write\"",
        ))
        .expect("route");
        assert!(route.takes(&gauge()));
        assert!(!route.takes(&log(None)));
    }

    #[test]
    fn min_severity_keeps_logs_at_least_that_severe_and_logs_without_one() {
        let route =
            Route::new(&config("type = \"console\"\nmin_severity = \"warning\"")).expect("route");
        let cases = [
            (Some(Severity::Emergency), true),
            (Some(Severity::Error), true),
            (Some(Severity::Warning), true),
            (Some(Severity::Notice), false),
            (Some(Severity::Info), false),
            (Some(Severity::Trace), false),
            (None, true),
        ];
        for (severity, kept) in cases {
            assert_eq!(route.takes(&log(severity)), kept, "{severity:?}");
        }
        assert!(route.takes(&gauge()), "min_severity filters logs only");
        let b = batch(vec![
            log(Some(Severity::Info)),
            log(Some(Severity::Error)),
            gauge(),
        ]);
        let routed = route.apply(&b).expect("some pass");
        assert_eq!(routed.events.len(), 2);
    }
}
