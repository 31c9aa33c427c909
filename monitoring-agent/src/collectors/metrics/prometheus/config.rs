//! `[[collectors.metrics.prometheus]]`: one table per scrape target.

use std::path::PathBuf;

use monitoring_common::config::Problem;
use monitoring_common::event::Labels;
use serde::{Deserialize, Serialize};

use crate::transport::tls::TlsClientConfig;

/// Longest accepted scrape interval: a day.
const MAX_INTERVAL_SECS: u64 = 86_400;

/// One scrape target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The exposition's URL, `http://` or `https://`. Required.
    pub url: String,
    /// Seconds between two scrapes. Default `15`.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Seconds a scrape may take, at most `interval_secs`. Default `10` (or the
    /// interval when shorter).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// The `job` label of every sample. Default `"prometheus"`.
    #[serde(default = "default_job")]
    pub job: String,
    /// Extra labels added to every sample (they win over the exposition's). Default
    /// none.
    #[serde(default)]
    pub labels: Labels,
    /// Sent as `Authorization: Bearer ...`. Default none.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// A file whose content (trimmed) is the bearer token, read at every scrape so
    /// that a rotated token is used without a reload. Default none.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// A scrape with more samples fails whole. Default `50000`.
    #[serde(default = "default_sample_limit")]
    pub sample_limit: usize,
    /// A larger response body fails the scrape. Default `16777216` (16 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// TLS for `https://` targets: `ca` (required), `cert` and `key` for mutual TLS,
    /// `server_name`. Default none.
    #[serde(default)]
    pub tls: Option<TlsClientConfig>,
}

fn default_interval() -> u64 {
    15
}

fn default_job() -> String {
    "prometheus".into()
}

fn default_sample_limit() -> usize {
    50_000
}

fn default_max_body_bytes() -> usize {
    16 << 20
}

impl ScrapeConfig {
    /// The scrape timeout: `timeout_secs`, or 10 s capped by the interval.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.timeout_secs
                .unwrap_or_else(|| self.interval_secs.min(10)),
        )
    }

    /// Every problem of this table; `prefix` is its dotted key
    /// (`collectors.metrics.prometheus[0]`).
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let key = |name: &str| format!("{prefix}.{name}");
        match self.url.parse::<http::Uri>() {
            Ok(uri) => {
                let scheme = uri.scheme_str();
                if !matches!(scheme, Some("http" | "https")) || uri.host().is_none() {
                    problems.push(Problem::new(
                        key("url"),
                        "must be an http:// or https:// URL with a host",
                    ));
                }
                let https = scheme == Some("https");
                match &self.tls {
                    Some(tls) => problems.extend(tls.validate(&key("tls"), https)),
                    None if https => problems.push(Problem::new(
                        key("tls.ca"),
                        "is required for an https:// target (the CA that signed its certificate)",
                    )),
                    None => {}
                }
            }
            Err(e) => problems.push(Problem::new(key("url"), format!("is not a URL: {e}"))),
        }
        if !(1..=MAX_INTERVAL_SECS).contains(&self.interval_secs) {
            problems.push(Problem::new(
                key("interval_secs"),
                format!("must be between 1 and {MAX_INTERVAL_SECS} seconds"),
            ));
        }
        if let Some(timeout) = self.timeout_secs
            && !(1..=self.interval_secs).contains(&timeout)
        {
            problems.push(Problem::new(
                key("timeout_secs"),
                "must be at least 1 and at most interval_secs (scrapes must not overlap)",
            ));
        }
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            problems.push(Problem::new(
                key("bearer_token_file"),
                "bearer_token and bearer_token_file exclude each other: set one",
            ));
        }
        if self.job.is_empty() {
            problems.push(Problem::new(key("job"), "must not be empty"));
        }
        if self.sample_limit == 0 {
            problems.push(Problem::new(key("sample_limit"), "must be at least 1"));
        }
        if self.max_body_bytes < 1024 {
            problems.push(Problem::new(key("max_body_bytes"), "must be at least 1024"));
        }
        problems
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn keys(c: &ScrapeConfig) -> Vec<String> {
        c.validate("t").into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn defaults_and_problems() {
        let c: ScrapeConfig = toml::from_str("url = \"http://127.0.0.1:9100/metrics\"").unwrap();
        assert_eq!(c.interval_secs, 15);
        assert_eq!(c.timeout(), std::time::Duration::from_secs(10));
        assert_eq!(c.job, "prometheus");
        assert!(keys(&c).is_empty());

        let bad: ScrapeConfig = toml::from_str(
            "url = \"ftp://x/\"\ninterval_secs = 5\ntimeout_secs = 6\nbearer_token = \"a\"\n\
             bearer_token_file = \"/t\"\nsample_limit = 0\njob = \"\"",
        )
        .unwrap();
        assert_eq!(
            keys(&bad),
            [
                "t.url",
                "t.timeout_secs",
                "t.bearer_token_file",
                "t.job",
                "t.sample_limit"
            ]
        );
        let https: ScrapeConfig = toml::from_str("url = \"https://h/metrics\"").unwrap();
        assert_eq!(keys(&https), ["t.tls.ca"]);
        assert!(toml::from_str::<ScrapeConfig>("url = \"http://h/\"\ninterval = 3").is_err());
    }
}
