//! Reading single series out of a Prometheus text exposition: the agent's and the
//! collector's `/metrics`, by metric name and label values, for tests that check
//! accounting per label rather than summed over every label set (`agent_metric`).

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
        let mut found = None;
        for line in self.0.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let (set, value) = match rest.strip_prefix('{') {
                Some(r) => match r.split_once("} ") {
                    Some((set, value)) => (set, value),
                    None => continue,
                },
                None => match rest.strip_prefix(' ') {
                    Some(value) => ("", value),
                    None => continue,
                },
            };
            let all = labels
                .iter()
                .all(|(k, v)| set.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            if !all {
                continue;
            }
            let Ok(v) = value.trim().parse::<f64>() else {
                continue;
            };
            *found.get_or_insert(0.0) += v;
        }
        found
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
