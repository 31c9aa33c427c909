//! What tests read from running processes: Prometheus self-metrics (the agent's
//! control server, the collector's `/metrics`) and peak memory from `/proc`.

use crate::*;

/// The sum of the samples of `name` in a Prometheus text exposition whose label set
/// contains `label` (such as `reason="store"`; every label set when `None`). A
/// counter's `_total` suffix is added when `name` lacks it. `None` when there is no
/// such sample.
pub fn metric_in(body: &str, name: &str, label: Option<&str>) -> Option<f64> {
    let total = format!("{name}_total");
    let mut found = None;
    for line in body.lines() {
        let Some(rest) = line
            .strip_prefix(total.as_str())
            .or_else(|| line.strip_prefix(name))
        else {
            continue;
        };
        let labels = if let Some(r) = rest.strip_prefix('{') {
            r.split_once('}').map_or("", |(l, _)| l)
        } else if rest.starts_with(' ') {
            ""
        } else {
            continue;
        };
        if label.is_some_and(|l| !labels.contains(l)) {
            continue;
        }
        let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// [`metric_in`] over the collector's `/metrics` (read with its API token); `None`
/// when the API does not answer or has no such sample.
pub fn collector_metric(collector: &Collector, name: &str, label: Option<&str>) -> Option<f64> {
    let url = format!("{}/metrics", collector.api());
    let (status, body) = blocking_get_with(&url, Some(&collector.api_token)).ok()?;
    if status != 200 {
        return None;
    }
    metric_in(&body, name, label)
}

/// A field of `/proc/<pid>/status` given in kB (`VmHWM`, `VmRSS`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib = value
        .trim()
        .strip_suffix("kB")
        .with_context(|| format!("{field} of {pid} is not in kB: {value:?}"))?;
    Ok(kib.trim().parse()?)
}

/// The peak resident memory of a process so far (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    proc_status_kib(pid, "VmHWM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_samples_only() {
        let body = "# HELP x_total a\n\
                    x_total{reason=\"store\"} 3\n\
                    x_total{reason=\"queue_full\"} 4\n\
                    x_other_total 100\n\
                    y 7\n";
        assert_eq!(metric_in(body, "x", None), Some(7.0));
        assert_eq!(metric_in(body, "x", Some("reason=\"store\"")), Some(3.0));
        assert_eq!(metric_in(body, "x", Some("reason=\"rate\"")), None);
        assert_eq!(metric_in(body, "y", None), Some(7.0));
        assert_eq!(metric_in(body, "z", None), None);
    }
}
