//! Reading the agent's and the collector's self-metrics (Prometheus text): sums over
//! a metric's label sets ([`metric_in`], [`agent_metric`], [`collector_metric`]) or
//! single series by label values ([`Scrape::value`]), all from one line parser.

use crate::*;

/// One scrape of a `/metrics` page.
#[derive(Debug, Clone)]
pub struct Scrape(pub String);

impl Scrape {
    /// GETs `url` (plain HTTP); an error unless it answers 200.
    pub fn get(url: &str, bearer: Option<&str>) -> Result<Scrape> {
        let (status, body) = blocking_get_with(url, bearer)?;
        if status != 200 {
            bail!("GET {url}: {status}: {body}");
        }
        Ok(Scrape(body))
    }

    /// The agent's control server `/metrics`.
    pub fn agent(agent: &Agent) -> Result<Scrape> {
        Scrape::get(
            &format!("http://127.0.0.1:{}/metrics", agent.control_port),
            None,
        )
    }

    /// The collector's `/metrics` (with its admin API token).
    pub fn collector(collector: &Collector) -> Result<Scrape> {
        Scrape::get(
            &format!("{}/metrics", collector.api()),
            Some(&collector.api_token),
        )
    }

    /// The sum of the samples of `name` (exactly; give counters with `_total`) whose
    /// labels include every `(label, value)` in `labels`; `None` if there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sum(&self.0, |n, set| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| set.split(',').any(|pair| pair == format!("{k}=\"{v}\"")))
        })
    }

    /// Like [`Scrape::value`], as a whole count; an error naming the series when
    /// it is missing (a metric that should exist from the start).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> Result<u64> {
        match self.value(name, labels) {
            Some(v) => Ok(v as u64),
            None => bail!("no series {name}{labels:?} in:\n{}", self.0),
        }
    }
}

/// The samples of a Prometheus text exposition: (name, label set text, value).
fn samples(body: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            Some(match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?, value),
                None => (series, "", value),
            })
        })
}

/// The sum of the samples `keep` accepts by name and label set; `None` if none.
fn sum(body: &str, keep: impl Fn(&str, &str) -> bool) -> Option<f64> {
    samples(body)
        .filter(|(name, set, _)| keep(name, set))
        .map(|(_, _, v)| v)
        .reduce(|a, b| a + b)
}

/// The sum of the samples of `name` in a Prometheus text exposition whose label set
/// contains `label` (such as `reason="store"`; every label set when `None`). A
/// counter's `_total` suffix is added when `name` lacks it. `None` when there is no
/// such sample.
pub fn metric_in(body: &str, name: &str, label: Option<&str>) -> Option<f64> {
    let total = format!("{name}_total");
    sum(body, |n, set| {
        (n == name || n == total) && label.is_none_or(|l| set.contains(l))
    })
}

/// The sum of every sample of the metric `name` (all label sets; a counter's
/// `_total` suffix is added when `name` lacks it) in the agent's `/metrics`; `None`
/// when the control server does not answer or has no such metric.
pub fn agent_metric(agent: &Agent, name: &str) -> Option<f64> {
    agent_metric_with(agent, name, None)
}

/// Like [`agent_metric`], only the samples whose labels contain `label` (such as
/// `reason="retry_later"`) when it is given.
pub fn agent_metric_with(agent: &Agent, name: &str, label: Option<&str>) -> Option<f64> {
    metric_in(&Scrape::agent(agent).ok()?.0, name, label)
}

/// [`metric_in`] over the collector's `/metrics` (read with its API token); `None`
/// when the API does not answer or has no such sample.
pub fn collector_metric(collector: &Collector, name: &str, label: Option<&str>) -> Option<f64> {
    metric_in(&Scrape::collector(collector).ok()?.0, name, label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_samples_only() {
        let body = "# HELP x_total a\n\
                    x_total{reason=\"store\"} 3\n\
                    x_total{reason=\"queue_full\",kind=\"log\"} 4\n\
                    x_other_total 100\n\
                    y 7\n";
        assert_eq!(metric_in(body, "x", None), Some(7.0));
        assert_eq!(metric_in(body, "x", Some("reason=\"store\"")), Some(3.0));
        assert_eq!(metric_in(body, "x", Some("reason=\"rate\"")), None);
        assert_eq!(metric_in(body, "y", None), Some(7.0));
        assert_eq!(metric_in(body, "z", None), None);
        let scrape = Scrape(body.to_owned());
        assert_eq!(scrape.value("x_total", &[("kind", "log")]), Some(4.0));
        assert_eq!(scrape.value("x", &[]), None);
    }
}
