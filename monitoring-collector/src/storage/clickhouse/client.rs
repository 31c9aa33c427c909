//! The HTTP side of the ClickHouse store: what `[storage] url` means, and the three
//! kinds of request the store makes (statements, queries answered in RowBinary, and
//! inserts of RowBinary rows).
//!
//! Blocking on purpose: the [`Store`](crate::storage::Store) trait is called from
//! processor OS threads and `spawn_blocking`. ureq has no runtime of its own, so,
//! unlike reqwest's blocking client, the store can be dropped anywhere (even inside
//! an async task at shutdown) without panicking. TLS is rustls with *ring* and the
//! platform's trust store, so no C library is needed.
//!
//! The user and password from the URL travel in the `X-ClickHouse-User` and
//! `X-ClickHouse-Key` headers, never in a request URL, and no `Debug` or error
//! output of this module contains the password.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use ureq::tls::{RootCerts, TlsConfig};

/// Largest query answer read, in bytes: queries are bounded by the API's limits,
/// and this keeps a runaway answer from taking the collector's memory.
const MAX_ANSWER_BYTES: u64 = 256 * 1024 * 1024;
/// Largest error text kept from the server.
const MAX_ERROR_BYTES: u64 = 16 * 1024;
/// Database used when the URL names none.
pub(crate) const DEFAULT_DATABASE: &str = "monitoring";

/// A failure talking to ClickHouse.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClickhouseError {
    /// No answer: connection refused, timeout, TLS failure...
    #[error("request to {url} failed: {source}")]
    Transport {
        /// The server (no credentials in it).
        url: String,
        /// The cause.
        #[source]
        source: ureq::Error,
    },
    /// The server answered with an error.
    #[error("ClickHouse at {url} answered {status}: {message}")]
    Server {
        /// The server.
        url: String,
        /// HTTP status.
        status: u16,
        /// Its message (`Code: 62, e.displayText() = ...`).
        message: String,
    },
    /// The answer was not what the query asked for.
    #[error("unexpected answer from ClickHouse: {0}")]
    Decode(String),
}

/// Why a `[storage] url` is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ClickHouse URL: {0}")]
pub struct UrlError(String);

/// A parsed `[storage] url`: `http(s)://user:password@host:port/?database=name`.
///
/// Query parameters other than `database` are passed on, as given, to every
/// request: they are ClickHouse settings (`insert_quorum=2`...).
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host:port/path`, without credentials or query.
    base: String,
    /// The database holding the store's tables.
    database: String,
    user: String,
    key: String,
    /// Extra settings, `name=value` as written in the URL (already URL-encoded).
    settings: Vec<String>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("base", &self.base)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("key", &"<redacted>")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Endpoint {
    /// Parses a URL of the ClickHouse HTTP interface.
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        let bad = |why: &str| UrlError(why.to_string());
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected http://host:port/?database=name"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        if before_query.contains('#') || query.is_some_and(|q| q.contains('#')) {
            return Err(bad("a fragment (#...) has no meaning here"));
        }
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, "/"),
        };
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '\\')
        {
            return Err(bad("the host is not valid"));
        }
        let (user, key) = match userinfo {
            None => ("default".to_string(), String::new()),
            Some(info) => {
                let (u, k) = info.split_once(':').unwrap_or((info, ""));
                let user = percent_decode(u).ok_or_else(|| bad("bad %-escape in the user"))?;
                let key = percent_decode(k).ok_or_else(|| bad("bad %-escape in the password"))?;
                (
                    if user.is_empty() {
                        "default".into()
                    } else {
                        user
                    },
                    key,
                )
            }
        };
        let mut database = DEFAULT_DATABASE.to_string();
        let mut settings = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "database" => {
                    database =
                        percent_decode(value).ok_or_else(|| bad("bad %-escape in database"))?;
                }
                // Set by the store itself on the requests that need them.
                "query" | "wait_end_of_query" | "user" | "password" => {
                    return Err(bad(&format!("the parameter {name:?} cannot be set here")));
                }
                _ if name.is_empty()
                    || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
                {
                    return Err(bad(&format!("{name:?} is not a ClickHouse setting name")));
                }
                _ => settings.push(pair.to_string()),
            }
        }
        check_database(&database)?;
        Ok(Endpoint {
            base: format!("{scheme}://{host}{path}"),
            database,
            user,
            key,
            settings,
        })
    }

    /// The database of the store.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The server, without credentials: safe to log.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// The same server with another database (tests use one database each).
    pub fn with_database(&self, database: &str) -> Result<Endpoint, UrlError> {
        check_database(database)?;
        let mut endpoint = self.clone();
        endpoint.database = database.to_string();
        Ok(endpoint)
    }
}

/// Database names are kept to letters, digits and underscores, so that they need
/// no quoting rules beyond backticks.
fn check_database(name: &str) -> Result<(), UrlError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(UrlError(
            "the database name must be 1 to 128 letters, digits and underscores".into(),
        )),
    }
}

/// Decodes `%XX` escapes; `None` on a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a query for a URL parameter: everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A connection pool to one ClickHouse server. Cheap to share; every method may be
/// called from any thread and blocks until ClickHouse answers or the timeout ends.
pub(crate) struct Client {
    agent: ureq::Agent,
    endpoint: Endpoint,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of `endpoint` whose every request ends within `timeout`, keeping at
    /// most `idle` idle connections.
    pub(crate) fn new(endpoint: Endpoint, timeout: Duration, idle: usize) -> Client {
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_idle_connections(idle)
            .max_idle_connections_per_host(idle)
            .max_redirects(0)
            .tls_config(tls)
            .user_agent("monitoring-collector")
            .build()
            .new_agent();
        Client { agent, endpoint }
    }

    /// The server and database.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The URL of a request, with the extra settings and `params`.
    fn url(&self, params: &[(&str, &str)]) -> String {
        let mut url = self.endpoint.base.clone();
        let mut sep = '?';
        for s in &self.endpoint.settings {
            url.push(sep);
            url.push_str(s);
            sep = '&';
        }
        for (name, value) in params {
            url.push(sep);
            url.push_str(name);
            url.push('=');
            url.push_str(&percent_encode(value));
            sep = '&';
        }
        url
    }

    /// Sends `body` to `url` and returns the answer's body when the server accepted it.
    fn post(&self, url: &str, body: &[u8]) -> Result<Vec<u8>, ClickhouseError> {
        let transport = |source| ClickhouseError::Transport {
            url: self.endpoint.base.clone(),
            source,
        };
        let mut response = self
            .agent
            .post(url)
            .header("X-ClickHouse-User", &self.endpoint.user)
            .header("X-ClickHouse-Key", &self.endpoint.key)
            .send(body)
            .map_err(transport)?;
        let status = response.status().as_u16();
        if status != 200 {
            let mut text = Vec::new();
            let read = response
                .body_mut()
                .as_reader()
                .take(MAX_ERROR_BYTES)
                .read_to_end(&mut text);
            let message = match read {
                Ok(_) => String::from_utf8_lossy(&text).trim().to_string(),
                Err(e) => format!("(error text unreadable: {e})"),
            };
            return Err(ClickhouseError::Server {
                url: self.endpoint.base.clone(),
                status,
                message,
            });
        }
        response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(transport)
    }

    /// Runs a statement that returns nothing of interest (DDL, ALTER).
    pub(crate) fn execute(&self, sql: &str) -> Result<(), ClickhouseError> {
        self.post(&self.url(&[]), sql.as_bytes()).map(drop)
    }

    /// Runs a query and returns its answer; `sql` ends with its `FORMAT`. The server
    /// holds the answer until the query has finished, so that an error half-way
    /// through comes as an error status rather than as a truncated answer.
    pub(crate) fn query(&self, sql: &str) -> Result<Vec<u8>, ClickhouseError> {
        self.post(&self.url(&[("wait_end_of_query", "1")]), sql.as_bytes())
    }

    /// Inserts `rows`, encoded as RowBinary for `columns`, into `table` (a quoted,
    /// qualified name). One insert is one block: ClickHouse writes it as one part,
    /// all or nothing.
    pub(crate) fn insert(
        &self,
        table: &str,
        columns: &str,
        rows: &[u8],
    ) -> Result<(), ClickhouseError> {
        let query = format!("INSERT INTO {table} ({columns}) FORMAT RowBinary");
        self.post(&self.url(&[("query", &query)]), rows).map(drop)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_url() {
        let e = Endpoint::parse("http://writer:s%3Acret@ch.example:8123/?database=mon_1").unwrap();
        assert_eq!(e.base, "http://ch.example:8123/");
        assert_eq!(e.database, "mon_1");
        assert_eq!(e.user, "writer");
        assert_eq!(e.key, "s:cret");
        assert!(e.settings.is_empty());
        let debug = format!("{e:?}");
        assert!(!debug.contains("s:cret"), "{debug}");

        let e = Endpoint::parse("HTTPS://[::1]:8443?insert_quorum=2&database=m").unwrap();
        assert_eq!(e.base, "https://[::1]:8443/");
        assert_eq!(e.user, "default");
        assert_eq!(e.key, "");
        assert_eq!(e.settings, ["insert_quorum=2"]);
        assert_eq!(e.database, "m");

        let e = Endpoint::parse("http://h:1").unwrap();
        assert_eq!(e.database, DEFAULT_DATABASE);
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        for bad in [
            "h:8123",
            "ftp://h/",
            "http://",
            "http://u:p@/",
            "http://h/?database=a-b",
            "http://h/?database=",
            "http://h/?database=%ZZ",
            "http://h/?query=DROP",
            "http://h/?wait_end_of_query=0",
            "http://h/?x%20y=1",
            "http://h/#frag",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_parameters_are_encoded() {
        let client = Client::new(
            Endpoint::parse("http://h:1/?max_threads=2&database=d").unwrap(),
            Duration::from_secs(1),
            1,
        );
        assert_eq!(
            client.url(&[("query", "INSERT INTO `d`.`t` FORMAT RowBinary")]),
            "http://h:1/?max_threads=2&query=INSERT%20INTO%20%60d%60.%60t%60%20FORMAT%20RowBinary"
        );
        assert_eq!(percent_decode("a%20b%2fc").unwrap(), "a b/c");
        assert_eq!(percent_decode("%4"), None);
    }
}
