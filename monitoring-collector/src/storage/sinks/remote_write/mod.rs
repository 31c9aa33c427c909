//! The `prometheus_remote_write` sink: metric events to a Prometheus remote-write
//! 1.0 receiver (Prometheus with `--web.enable-remote-write-receiver`, Mimir,
//! Thanos, VictoriaMetrics...).
//!
//! One POST per write: a `WriteRequest` protobuf ([`proto`], series built by
//! [`convert`]) compressed with snappy's block format, with `Content-Encoding:
//! snappy`, `Content-Type: application/x-protobuf`,
//! `X-Prometheus-Remote-Write-Version: 0.1.0` and the bearer token if one is set.
//!
//! Answers: 2xx is written; 5xx, 429 and failures to connect or to get an answer in
//! `timeout_ms` may pass and are retried; other statuses (a 400 for out-of-order or
//! too old samples, 401, 404...) will be refused again, so the data is dropped and
//! counted ([`SinkError::Rejected`]). Redirects are not followed.
//!
//! The client is ureq's (blocking, no async runtime of its own), over rustls with
//! the ring provider and Mozilla's root certificates built in: https:// needs no C
//! library and no system certificate store. User name and password in the URL
//! (`https://user:key@host/api/prom/push`) are sent as basic authentication and
//! never logged; `HTTPS_PROXY`/`NO_PROXY` are honoured.

pub mod convert;
pub mod proto;

use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64ct::{Base64, Encoding};
use prost::Message;

use super::config::SinkConfig;
use super::{Sink, SinkError};
use crate::storage::IngestBatch;

/// Bytes of an error response kept for the log.
const BODY_EXCERPT: u64 = 512;

/// Writes metrics to a remote-write endpoint.
pub struct RemoteWriteSink {
    agent: ureq::Agent,
    /// The URL without credentials: where requests go, and what is logged.
    url: String,
    /// `Authorization` header: the bearer token, or the URL's credentials.
    authorization: Option<String>,
    /// Why the last write failed, until one succeeds (for `health`).
    last_error: Mutex<Option<String>>,
}

impl RemoteWriteSink {
    /// The sink a `prometheus_remote_write` table describes.
    pub fn new(config: &SinkConfig) -> Result<RemoteWriteSink, String> {
        RemoteWriteSink::with(
            config.url.as_deref().unwrap_or_default(),
            config.bearer_token.clone(),
            Duration::from_millis(config.timeout_ms),
        )
    }

    /// A sink posting to `url`, with `bearer` as its token, each request bounded
    /// by `timeout`.
    pub fn with(
        url: &str,
        bearer: Option<String>,
        timeout: Duration,
    ) -> Result<RemoteWriteSink, String> {
        let (url, credentials) = split_credentials(url)?;
        let uri: ureq::http::Uri = url.parse().map_err(|e| format!("url {url:?}: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!(
                "url {url:?}: must be an http:// or https:// URL with a host"
            ));
        }
        let authorization = match (bearer, credentials) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(userinfo)) => Some(format!(
                "Basic {}",
                Base64::encode_string(userinfo.as_bytes())
            )),
            (None, None) => None,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("monitoring-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(RemoteWriteSink {
            agent,
            url,
            authorization,
            last_error: Mutex::new(None),
        })
    }

    fn post(&self, body: &[u8]) -> Result<(), SinkError> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        if let Some(value) = &self.authorization {
            request = request.header("Authorization", value);
        }
        let mut response = request.send(body).map_err(|e| SinkError::Transport {
            url: self.url.clone(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let mut excerpt = Vec::new();
        // The excerpt is for the log only; a body that cannot be read leaves it short.
        let _read: std::io::Result<u64> = response
            .body_mut()
            .as_reader()
            .take(BODY_EXCERPT)
            .read_to_end(&mut excerpt)
            .map(|n| n as u64);
        let body = String::from_utf8_lossy(&excerpt).trim().to_string();
        let url = self.url.clone();
        Err(match retryable(status) {
            true => SinkError::Status { url, status, body },
            false => SinkError::Rejected { url, status, body },
        })
    }
}

/// Whether a request answered `status` may succeed when sent again.
pub fn retryable(status: u16) -> bool {
    status >= 500 || status == 429
}

impl Sink for RemoteWriteSink {
    fn write(&self, batches: &[Arc<IngestBatch>]) -> Result<(), SinkError> {
        let request = convert::write_request(batches);
        if request.timeseries.is_empty() {
            return Ok(());
        }
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .map_err(|e| SinkError::Encode(e.to_string()))?;
        let result = self.post(&body);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = match &result {
            Err(error) if error.is_retryable() => Some(error.to_string()),
            _ => None,
        };
        result
    }

    fn health(&self) -> Result<(), SinkError> {
        match &*self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(error) => Err(SinkError::Unhealthy(error.clone())),
            None => Ok(()),
        }
    }

    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// `url` without its `user:password@`, and those credentials (percent-decoded).
fn split_credentials(url: &str) -> Result<(String, Option<String>), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("url {url:?}: must be an http:// or https:// URL"));
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let decoded = percent_decode(userinfo).ok_or_else(|| {
                "url: the user name or password is not valid percent-encoded UTF-8".to_string()
            })?;
            Ok((format!("{scheme}://{host}{path}"), Some(decoded)))
        }
        None => Ok((url.to_string(), None)),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_and_throttling_are_retried_other_refusals_are_not() {
        for status in [500, 502, 503, 504, 429] {
            assert!(retryable(status), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 413, 301] {
            assert!(!retryable(status), "{status}");
        }
    }

    #[test]
    fn credentials_in_the_url_are_not_shown() {
        let sink = RemoteWriteSink::with(
            "http://us%40er:p%3Ass@127.0.0.1:9/api/v1/write?x=a@b",
            None,
            Duration::from_secs(1),
        )
        .expect("valid");
        assert_eq!(sink.url, "http://127.0.0.1:9/api/v1/write?x=a@b");
        let expected = format!("Basic {}", Base64::encode_string(b"us@er:p:ss"));
        assert_eq!(sink.authorization.as_deref(), Some(expected.as_str()));
        let bearer = RemoteWriteSink::with("https://h/w", Some("t".into()), Duration::from_secs(1))
            .expect("valid");
        assert_eq!(bearer.authorization.as_deref(), Some("Bearer t"));
        assert!(RemoteWriteSink::with("ftp://x/", None, Duration::from_secs(1)).is_err());
        assert!(RemoteWriteSink::with("not a url", None, Duration::from_secs(1)).is_err());
    }
}
