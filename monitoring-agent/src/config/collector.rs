//! `[collector]`: where the agent ships to and as whom. One `endpoint`, or an ordered
//! list of `endpoints` the transport fails over between (see `transport::failover`);
//! the token, the window and the one `[collector.tls]` table serve them all.

use monitoring_common::config::Problem;
use serde::Deserialize;

use super::{check_range, header_safe};
use crate::transport::tls::TlsClientConfig;

/// The endpoint used when neither `endpoint` nor `endpoints` is set.
pub const DEFAULT_ENDPOINT: &str = "ws://127.0.0.1:7400/ingest";
/// Most entries in `endpoints`: each one has its own metric series, so the list is
/// kept short enough that the label stays bounded.
pub const MAX_ENDPOINTS: usize = 16;

/// A value that must never be printed (tokens).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `[collector]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// The collector's ingest WebSocket, `ws://` or `wss://`. Set this or
    /// `endpoints`, not both. Default `"ws://127.0.0.1:7400/ingest"` when neither is
    /// set.
    pub endpoint: Option<String>,
    /// Several collectors' ingest WebSockets, in order of preference (at most 16).
    /// The agent connects to the first and stays with whichever one works; when a
    /// connection fails it moves to the next at once, and backs off only after every
    /// endpoint failed in a row. It does not move back on its own while the current
    /// one works. All entries use the same scheme, since `[collector.tls]` serves
    /// them all. Default: none.
    pub endpoints: Option<Vec<String>>,
    /// Bearer token sent in the `Authorization` header (never in the URL). Empty or
    /// absent: no header. Default: none.
    pub auth_token: Option<Secret>,
    /// Most batches sent and not yet acknowledged. Default `8`.
    pub max_in_flight: usize,
    /// Limit on TCP connect plus WebSocket handshake, in seconds. Default `10`.
    pub connect_timeout_secs: u64,
    /// `[collector.tls]`: CA, client certificate and key for `wss://`. Default: none.
    pub tls: TlsClientConfig,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            endpoint: None,
            endpoints: None,
            auth_token: None,
            max_in_flight: 8,
            connect_timeout_secs: 10,
            tls: TlsClientConfig::default(),
        }
    }
}

impl CollectorConfig {
    /// The token to send, if one is set and not empty.
    pub fn token(&self) -> Option<&str> {
        self.auth_token
            .as_ref()
            .map(Secret::expose)
            .filter(|t| !t.is_empty())
    }

    /// The endpoints to connect to, in order of preference: `endpoints`, else
    /// `endpoint`, else [`DEFAULT_ENDPOINT`].
    pub fn endpoint_urls(&self) -> Vec<String> {
        match (&self.endpoints, &self.endpoint) {
            (Some(list), _) if !list.is_empty() => list.clone(),
            (_, Some(one)) => vec![one.clone()],
            _ => vec![DEFAULT_ENDPOINT.to_string()],
        }
    }

    /// The problems of `[collector]`, with their dotted keys.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let urls: Vec<(String, &str)> = match (&self.endpoint, &self.endpoints) {
            (Some(_), Some(_)) => {
                p.push(Problem::new(
                    "collector.endpoints",
                    "set either endpoint or endpoints, not both",
                ));
                Vec::new()
            }
            (Some(one), None) => vec![("collector.endpoint".to_string(), one.as_str())],
            (None, Some(list)) => {
                if list.is_empty() {
                    p.push(Problem::new(
                        "collector.endpoints",
                        "must list at least one endpoint",
                    ));
                }
                if list.len() > MAX_ENDPOINTS {
                    p.push(Problem::new(
                        "collector.endpoints",
                        format!("lists {} endpoints; at most {MAX_ENDPOINTS}", list.len()),
                    ));
                }
                list.iter()
                    .enumerate()
                    .map(|(i, url)| (format!("collector.endpoints[{i}]"), url.as_str()))
                    .collect()
            }
            (None, None) => Vec::new(),
        };
        for (i, (key, url)) in urls.iter().enumerate() {
            if let Err(message) = check_endpoint(url) {
                p.push(Problem::new(key.as_str(), message));
            }
            if let Some(first) = urls[..i].iter().position(|(_, u)| u == url) {
                p.push(Problem::new(
                    key.as_str(),
                    format!("repeats endpoints[{first}]"),
                ));
            }
        }
        let secure = urls.iter().filter(|(_, u)| u.starts_with("wss://")).count();
        if secure > 0 && secure < urls.len() {
            // A failover from wss:// to ws:// would send the token in clear.
            p.push(Problem::new(
                "collector.endpoints",
                "mixes ws:// and wss://: every endpoint must use the same scheme, since one \
                 [collector.tls] table serves them all",
            ));
        }
        p.extend(self.tls.validate("collector.tls", secure > 0));
        if let Some(token) = self.token()
            && !header_safe(token)
        {
            p.push(Problem::new(
                "collector.auth_token",
                "must be printable ASCII without spaces (it is sent in an HTTP header)",
            ));
        }
        check_range(
            &mut p,
            "collector.max_in_flight",
            self.max_in_flight,
            1,
            1024,
            "",
        );
        check_range(
            &mut p,
            "collector.connect_timeout_secs",
            self.connect_timeout_secs,
            1,
            300,
            " seconds",
        );
        p
    }
}

/// Whether `url` is a usable ingest URL; why not otherwise.
fn check_endpoint(url: &str) -> Result<(), String> {
    let uri = url
        .parse::<http::Uri>()
        .map_err(|e| format!("not a URL: {e}"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(
            "must not carry credentials (user:password@): the token goes in auth_token, \
             never in the URL"
                .into(),
        );
    }
    match (uri.scheme_str(), uri.host()) {
        // `[collector.tls]` is checked by the caller, with every scheme known.
        (Some("ws" | "wss"), Some(_)) => Ok(()),
        (_, None) => Err("must name a host, as in ws://host:7400/ingest".into()),
        (scheme, _) => Err(format!(
            "scheme {:?} is not ws:// or wss://",
            scheme.unwrap_or("")
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use std::path::Path;

    use monitoring_common::config::parse;

    use crate::config::AgentConfig;

    fn errors(text: &str) -> String {
        parse::<AgentConfig>(text, Path::new("a.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn tokens_come_from_the_environment_and_never_print() {
        let text = "[collector]\nauth_token = \"${MONITORING_TEST_UNSET_TOKEN_VAR:-}\"\n";
        let c: AgentConfig = parse(text, Path::new("a.toml")).unwrap();
        assert_eq!(c.collector.token(), None, "an empty token means no header");
        let text = "[collector]\nauth_token = \"s3cret\"\n";
        let c: AgentConfig = parse(text, Path::new("a.toml")).unwrap();
        assert_eq!(c.collector.token(), Some("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn wss_needs_a_ca() {
        let err = errors("[collector]\nendpoint = \"wss://collector:7400/ingest\"\n");
        assert!(err.contains("collector.tls.ca"), "{err}");
        let text = "[collector]\nendpoint = \"wss://collector:7400/ingest\"\n[collector.tls]\nca = \"ca.pem\"\n";
        parse::<AgentConfig>(text, Path::new("a.toml")).unwrap();
    }

    #[test]
    fn endpoints_parse_in_order() {
        let text = "[collector]\nendpoints = [\n  \"wss://a:7400/ingest\",\n  \"wss://b:7400/ingest\",\n]\n[collector.tls]\nca = \"ca.pem\"\n";
        let c: AgentConfig = parse(text, Path::new("a.toml")).unwrap();
        assert_eq!(
            c.collector.endpoint_urls(),
            ["wss://a:7400/ingest", "wss://b:7400/ingest"]
        );
        let one: AgentConfig = parse(
            "[collector]\nendpoint = \"ws://c:7400/ingest\"\n",
            Path::new("a.toml"),
        )
        .unwrap();
        assert_eq!(one.collector.endpoint_urls(), ["ws://c:7400/ingest"]);
    }

    #[test]
    fn endpoint_errors_name_the_index_and_line() {
        let text = "\
[collector]
endpoints = [
  \"ws://a:7400/ingest\",
  \"http://b:7400/ingest\",
  \"ws://user:pw@c:7400/ingest\",
  \"ws://a:7400/ingest\",
]
";
        let err = errors(text);
        for expected in [
            "a.toml:2: key `collector.endpoints[1]`: scheme \"http\" is not ws:// or wss://",
            "a.toml:2: key `collector.endpoints[2]`: must not carry credentials",
            "a.toml:2: key `collector.endpoints[3]`: repeats endpoints[0]",
        ] {
            assert!(
                err.lines().any(|l| l.starts_with(expected)),
                "{expected} not in\n{err}"
            );
        }
        assert!(!err.contains("endpoints[0]`"), "{err}");
        assert!(
            !err.contains("pw"),
            "the URL's password is not echoed: {err}"
        );
    }

    #[test]
    fn both_keys_none_and_mixed_schemes_are_errors() {
        let both = errors(
            "[collector]\nendpoint = \"ws://a:7400/ingest\"\nendpoints = [\"ws://b:7400/ingest\"]\n",
        );
        assert!(
            both.starts_with(
                "a.toml:3: key `collector.endpoints`: set either endpoint or endpoints, not both"
            ),
            "{both}"
        );
        let empty = errors("[collector]\nendpoints = []\n");
        assert!(empty.contains("must list at least one endpoint"), "{empty}");
        let mixed = errors(
            "[collector]\nendpoints = [\"wss://a:7400/ingest\", \"ws://b:7400/ingest\"]\n[collector.tls]\nca = \"ca.pem\"\n",
        );
        assert!(mixed.contains("mixes ws:// and wss://"), "{mixed}");
        // One wss:// entry is enough to need the CA.
        let no_ca = errors("[collector]\nendpoints = [\"wss://a:7400/ingest\"]\n");
        assert!(no_ca.contains("collector.tls.ca"), "{no_ca}");
        let many: Vec<String> = (0..17)
            .map(|i| format!("\"ws://h{i}:7400/ingest\""))
            .collect();
        let many = errors(&format!("[collector]\nendpoints = [{}]\n", many.join(", ")));
        assert!(many.contains("lists 17 endpoints; at most 16"), "{many}");
    }
}
