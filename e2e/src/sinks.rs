//! What tests read from the collector's fan-out sinks: the NDJSON a file sink
//! wrote, and series in the real Prometheus (`scripts/services.sh start`) that a
//! remote-write sink sent.

use crate::*;

/// The Prometheus the tests write to: `MONITORING_TEST_PROMETHEUS_URL` or
/// http://127.0.0.1:59090; an error naming `scripts/services.sh start` when it does
/// not answer.
pub fn prometheus_url() -> Result<String> {
    let url = std::env::var("MONITORING_TEST_PROMETHEUS_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:59090".into());
    match blocking_get(&format!("{url}/-/ready")) {
        Ok((200, _)) => Ok(url),
        other => bail!(
            "Prometheus does not answer at {url} ({other:?}): start it with `scripts/services.sh start` \
             (or set MONITORING_TEST_PROMETHEUS_URL)"
        ),
    }
}

/// An instant PromQL query: each result's labels and value.
pub fn prometheus_query(url: &str, query: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>> {
    let (status, body) = blocking_get(&format!("{url}/api/v1/query?query={}", urlencode(query)))?;
    if status != 200 {
        bail!("query {query}: {status}: {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let results = v["data"]["result"].as_array().context("result array")?;
    results
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .context("metric")?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let value = r["value"][1].as_str().context("value")?.parse()?;
            Ok((labels, value))
        })
        .collect()
}

/// The `message` of every line of an NDJSON file (a missing file has none); every
/// line must be a JSON object.
pub fn ndjson_messages(path: &Path) -> Result<Vec<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = match serde_json::from_str(l) {
                Ok(v) => v,
                Err(e) => return Some(Err(anyhow::anyhow!("not JSON ({e}): {l}"))),
            };
            v["message"].as_str().map(|m| Ok(m.to_string()))
        })
        .collect()
}
