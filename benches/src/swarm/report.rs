//! The result of a swarm run, and its printed table.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::SwarmOptions;
use super::agent::{Outcome, Shared};
use super::stats::CounterValues;

/// Distinct error messages kept for the report.
const MAX_ERRORS: usize = 5;

/// What a swarm run saw.
#[derive(Debug, Clone)]
pub struct SwarmReport {
    /// Agents started.
    pub agents: usize,
    /// Events per batch, batch interval, codec: the load asked for.
    pub events_per_batch: u32,
    /// See [`SwarmOptions::batch_interval`].
    pub batch_interval: Duration,
    /// Codec name.
    pub codec: &'static str,
    /// Uncompressed payload and whole frame bytes of one batch.
    pub batch_bytes: (usize, usize),
    /// Agents that connected at least once.
    pub connected: usize,
    /// Agents connected when the hold started whose connection lasted through it.
    pub held: usize,
    /// Connections open when the hold ended.
    pub connected_at_end: usize,
    /// From start until every agent had connected; `None` if some never did
    /// within the connect deadline.
    pub time_to_connect_all: Option<Duration>,
    /// How long the hold lasted.
    pub hold: Duration,
    /// Whole run, connect and drain included.
    pub total: Duration,
    /// Counters over the whole run.
    pub totals: CounterValues,
    /// Counters over the hold only.
    pub during_hold: CounterValues,
    /// Batches still unacknowledged when the agents closed.
    pub unacked_batches: usize,
    /// Ack latency (send to `ok`) of every acknowledged batch.
    pub ack_p50: Duration,
    /// 99th percentile of the same.
    pub ack_p99: Duration,
    /// Largest of the same.
    pub ack_max: Duration,
    /// Acks behind the latency figures.
    pub acks_measured: u64,
    /// Reasons of retry-later and rejected answers, most frequent first (at most 10).
    pub answer_reasons: Vec<(String, u64)>,
    /// Distinct connection errors and how many agents ended with each (at most 5).
    pub errors: Vec<(String, usize)>,
}

impl SwarmReport {
    /// Events acknowledged per second during the hold.
    pub fn hold_events_per_sec(&self) -> f64 {
        self.during_hold.events_acked as f64 / self.hold.as_secs_f64().max(1e-9)
    }

    /// Batches acknowledged per second during the hold.
    pub fn hold_batches_per_sec(&self) -> f64 {
        self.during_hold.batches_acked as f64 / self.hold.as_secs_f64().max(1e-9)
    }
}

pub(super) struct Inputs<'a> {
    pub opts: &'a SwarmOptions,
    pub shared: &'a Shared,
    pub outcomes: &'a [Outcome],
    pub all_connected: Option<Duration>,
    pub hold_start: Instant,
    pub hold_end: Instant,
    pub before: CounterValues,
    pub after: CounterValues,
    pub connected_at_end: usize,
    pub total: Duration,
}

pub(super) fn build(i: Inputs<'_>) -> SwarmReport {
    let held = i
        .outcomes
        .iter()
        .filter(|o| {
            o.first_connected.is_some_and(|t| t <= i.hold_start)
                && o.first_drop.is_none_or(|t| t > i.hold_end)
        })
        .count();
    let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
    for e in i.outcomes.iter().filter_map(|o| o.last_error.as_deref()) {
        *errors.entry(e).or_default() += 1;
    }
    let mut errors: Vec<(String, usize)> = errors
        .into_iter()
        .map(|(e, n)| (e.to_string(), n))
        .collect();
    errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    errors.truncate(MAX_ERRORS);
    let (a, b) = (i.after, i.before);
    let during_hold = CounterValues {
        connect_failures: a.connect_failures - b.connect_failures,
        disconnects: a.disconnects - b.disconnects,
        batches_sent: a.batches_sent - b.batches_sent,
        events_sent: a.events_sent - b.events_sent,
        batches_resent: a.batches_resent - b.batches_resent,
        batches_acked: a.batches_acked - b.batches_acked,
        events_acked: a.events_acked - b.events_acked,
        retry_later: a.retry_later - b.retry_later,
        batches_rejected: a.batches_rejected - b.batches_rejected,
        events_rejected: a.events_rejected - b.events_rejected,
        unexpected_acks: a.unexpected_acks - b.unexpected_acks,
    };
    let latency = &i.shared.latency;
    SwarmReport {
        agents: i.opts.agents,
        events_per_batch: i.opts.events_per_batch(),
        batch_interval: i.opts.batch_interval,
        codec: i.opts.codec.as_str(),
        batch_bytes: i.shared.templates.sizes(),
        connected: i
            .outcomes
            .iter()
            .filter(|o| o.first_connected.is_some())
            .count(),
        held,
        connected_at_end: i.connected_at_end,
        time_to_connect_all: i.all_connected,
        hold: i.hold_end - i.hold_start,
        total: i.total,
        totals: i.shared.counters.snapshot(),
        during_hold,
        unacked_batches: i.outcomes.iter().map(|o| o.unacked).sum(),
        ack_p50: latency.quantile(0.5),
        ack_p99: latency.quantile(0.99),
        ack_max: latency.max(),
        acks_measured: latency.count(),
        answer_reasons: i.shared.reasons.counts(),
        errors,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for SwarmReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        let h = &self.during_hold;
        let row = |f: &mut fmt::Formatter<'_>, k: &str, v: String| writeln!(f, "| {k} | {v} |");
        writeln!(f, "| swarm | value |")?;
        writeln!(f, "|---|---|")?;
        row(
            f,
            "load per agent",
            format!(
                "{} events every {:?} ({}), {} B payload, {} B frame",
                self.events_per_batch,
                self.batch_interval,
                self.codec,
                self.batch_bytes.0,
                self.batch_bytes.1
            ),
        )?;
        row(
            f,
            "agents connected / held through the hold / open at its end",
            format!(
                "{} / {} / {} of {}",
                self.connected, self.held, self.connected_at_end, self.agents
            ),
        )?;
        row(
            f,
            "time to connect all",
            self.time_to_connect_all
                .map_or_else(|| "not all connected".into(), ms),
        )?;
        row(
            f,
            "connect failures / disconnects",
            format!("{} / {}", t.connect_failures, t.disconnects),
        )?;
        row(
            f,
            "hold",
            format!(
                "{:.1} s (run {:.1} s)",
                self.hold.as_secs_f64(),
                self.total.as_secs_f64()
            ),
        )?;
        row(
            f,
            "batches sent / acked / resent",
            format!(
                "{} / {} / {}",
                t.batches_sent, t.batches_acked, t.batches_resent
            ),
        )?;
        row(
            f,
            "events sent / acked",
            format!("{} / {}", t.events_sent, t.events_acked),
        )?;
        row(
            f,
            "retry-later / rejected batches (events) / unexpected acks",
            format!(
                "{} / {} ({}) / {}",
                t.retry_later, t.batches_rejected, t.events_rejected, t.unexpected_acks
            ),
        )?;
        row(
            f,
            "unacknowledged at the end (batches)",
            self.unacked_batches.to_string(),
        )?;
        row(
            f,
            "during the hold: events/s, batches/s acked",
            format!(
                "{:.0}, {:.1} ({} events)",
                self.hold_events_per_sec(),
                self.hold_batches_per_sec(),
                h.events_acked
            ),
        )?;
        row(
            f,
            "ack latency p50 / p99 / max",
            format!(
                "{} / {} / {} ({} acks)",
                ms(self.ack_p50),
                ms(self.ack_p99),
                ms(self.ack_max),
                self.acks_measured
            ),
        )?;
        for (reason, n) in &self.answer_reasons {
            row(f, "answers other than ok", format!("{n} x {reason}"))?;
        }
        for (error, n) in &self.errors {
            row(f, "last error of agents", format!("{n} x {error}"))?;
        }
        Ok(())
    }
}
