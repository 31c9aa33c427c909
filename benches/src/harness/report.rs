//! The results table: one row per scenario, printed as Markdown so that it can go
//! into BENCHMARKS.md as it is.

use super::verify::Counts;

/// What one scenario measured. Columns that do not apply are `None` and print `-`.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The scenario's name.
    pub name: String,
    /// Lines (or events) delivered.
    pub events: u64,
    /// Events per second delivered, end to end.
    pub events_per_sec: Option<f64>,
    /// MiB of log lines per second delivered.
    pub mib_per_sec: Option<f64>,
    /// Agent CPU seconds per GiB of lines shipped.
    pub agent_cpu_per_gib: Option<f64>,
    /// Collector CPU seconds per GiB of lines received.
    pub collector_cpu_per_gib: Option<f64>,
    /// Agent CPU, percent of one core, over the run.
    pub agent_cpu_percent: Option<f64>,
    /// Collector CPU, percent of one core, over the run.
    pub collector_cpu_percent: Option<f64>,
    /// Agent peak RSS, MiB.
    pub agent_peak_mib: Option<f64>,
    /// Collector peak RSS, MiB.
    pub collector_peak_mib: Option<f64>,
    /// End-to-end latency p50, p99 and max, ms.
    pub latency_ms: Option<(f64, f64, f64)>,
    /// Size reduction by compression, percent.
    pub reduction_percent: Option<f64>,
    /// Lost and repeated lines.
    pub counts: Option<Counts>,
    /// Anything else worth a note (failed checks first).
    pub note: String,
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

/// The table of `rows`, in Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | events | events/s | MiB/s | agent CPU s/GiB | collector CPU s/GiB \
         | agent CPU % | collector CPU % | agent peak RSS MiB | collector peak RSS MiB \
         | latency p50/p99/max ms | reduction | lost/dup | note |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let latency = r.latency_ms.map_or_else(
            || "-".into(),
            |(p50, p99, max)| format!("{p50:.1} / {p99:.1} / {max:.1}"),
        );
        let counts = r
            .counts
            .map_or_else(|| "-".into(), |c| format!("{}/{}", c.lost, c.duplicates));
        let reduction = r
            .reduction_percent
            .map_or_else(|| "-".into(), |v| format!("{v:.1}%"));
        out.push_str(&format!(

            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {latency} | {reduction} | {counts} | {} |\n",
            r.name,
            r.events,
            opt(r.events_per_sec, 0),
            opt(r.mib_per_sec, 1),
            opt(r.agent_cpu_per_gib, 2),
            opt(r.collector_cpu_per_gib, 2),
            opt(r.agent_cpu_percent, 2),
            opt(r.collector_cpu_percent, 2),
            opt(r.agent_peak_mib, 1),
            opt(r.collector_peak_mib, 1),
            r.note,
        ));
    }
    out
}
