//! Settings of the PostgreSQL store, taken from the `[storage]` keys beside
//! `backend = "postgres"`, and the connection settings derived from them.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use monitoring_common::config::Problem;
use postgres::config::{ChannelBinding, Host};

use super::error::PgError;
use crate::storage::config::StorageConfig;

/// Longest retention accepted, as for the sqlite store: a century is surely a typo
/// for "forever" (0).
const MAX_RETENTION_DAYS: u32 = 36_500;

/// Settings of the PostgreSQL store.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `storage.url`: a libpq-style URL or key=value string,
    /// `postgres://user:password@host:port/database`; its `sslmode` (`disable`,
    /// `prefer` (default), `require`) says whether TLS is used. No default.
    pub url: String,
    /// `storage.tls_ca`: PEM file of the CA certificate(s) the server's certificate
    /// must chain to when TLS is used. Default: none (the system's root
    /// certificates).
    pub tls_ca: Option<PathBuf>,
    /// `storage.retention_days`: days of data kept, counted by the UTC day a batch
    /// was received; a day's partitions are dropped once all of that day is older
    /// than this. `0` keeps everything. Default 7.
    pub retention_days: u32,
    /// `storage.read_pool_size`: connections in the pool, shared by commits and
    /// queries. Default 4.
    pub pool_size: usize,
    /// `storage.timeout_ms`: bounds connecting, every statement, every lock wait and
    /// the wait for a free pooled connection, in milliseconds. Default 10000.
    pub timeout_ms: u64,
    /// `storage.text_index`: keep a pg_trgm index over log messages (word searches
    /// in milliseconds; log ingest about 4x slower). Default true.
    pub text_index: bool,
}

impl std::fmt::Debug for PostgresConfig {
    // By hand, so that the password in the URL never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match postgres::Config::from_str(&self.url) {
            Ok(config) => describe(&config),
            Err(_) => "<unparsable url>".into(),
        };
        f.debug_struct("PostgresConfig")
            .field("url", &target)
            .field("tls_ca", &self.tls_ca)
            .field("retention_days", &self.retention_days)
            .field("pool_size", &self.pool_size)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl PostgresConfig {
    /// The postgres settings of a `[storage]` section (its `url` may be missing,
    /// which [`PostgresConfig::validate`] reports).
    pub fn from_storage(storage: &StorageConfig) -> PostgresConfig {
        PostgresConfig {
            url: storage.url.clone().unwrap_or_default(),
            tls_ca: storage.tls_ca.clone(),
            retention_days: storage.retention_days,
            pool_size: storage.read_pool_size,
            timeout_ms: storage.timeout_ms,
            text_index: storage.text_index,
        }
    }

    /// All problems with these settings, keyed `storage.<field>`. Pure: no I/O.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.url.is_empty() {
            problems.push(Problem::new(
                "storage.url",
                "is required for backend postgres",
            ));
        } else {
            match postgres::Config::from_str(&self.url) {
                // The parser's message names the bad option, never its value.
                Err(error) => problems.push(Problem::new(
                    "storage.url",
                    format!("is not a PostgreSQL URL: {}", super::error::chain(&error)),
                )),
                // The server's certificate is verified instead (see `tls`).
                Ok(config) if config.get_channel_binding() == ChannelBinding::Require => {
                    problems.push(Problem::new(
                        "storage.url",
                        "asks for channel_binding=require, which this client does not support \
                         (the server's certificate is verified instead; use sslmode=require)",
                    ));
                }
                Ok(_) => {}
            }
        }
        if let Some(path) = &self.tls_ca
            && let Err(error) = crate::tls::load_certs("storage.tls_ca", path)
        {
            problems.push(Problem::new("storage.tls_ca", error.to_string()));
        }
        if self.retention_days > MAX_RETENTION_DAYS {
            problems.push(Problem::new(
                "storage.retention_days",
                format!("must be at most {MAX_RETENTION_DAYS} (use 0 to keep data forever)"),
            ));
        }
        if !(1..=64).contains(&self.pool_size) {
            problems.push(Problem::new(
                "storage.read_pool_size",
                "must be between 1 and 64",
            ));
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            problems.push(Problem::new(
                "storage.timeout_ms",
                "must be between 1 and 600000",
            ));
        }
        problems
    }

    /// The timeout as a duration.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// The client settings: the URL's, with our timeouts, keepalives and name.
    pub(crate) fn client_config(&self) -> Result<(postgres::Config, String), PgError> {
        let mut config = postgres::Config::from_str(&self.url).map_err(|source| PgError::Db {
            target: "storage.url".into(),
            source,
        })?;
        let timeout = self.timeout();
        config.connect_timeout(timeout);
        // A dead server or a cut network would otherwise leave a query waiting for
        // TCP's own give-up (many minutes): unacknowledged sends fail after the
        // timeout, and an idle wait for an answer is probed by keepalives.
        config.tcp_user_timeout(timeout.max(Duration::from_secs(1)));
        config.keepalives(true);
        config.keepalives_idle(timeout.max(Duration::from_secs(1)));
        config.keepalives_interval(Duration::from_secs(1));
        config.keepalives_retries(3);
        if config.get_application_name().is_none() {
            config.application_name("monitoring-collector");
        }
        let target = describe(&config);
        Ok((config, target))
    }
}

/// `user@host:port/database`, what error messages and logs name: never the password.
pub(crate) fn describe(config: &postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(",")
    };
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{hosts}/{db}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(url: &str) -> PostgresConfig {
        PostgresConfig {
            url: url.into(),
            tls_ca: None,
            retention_days: 7,
            pool_size: 4,
            timeout_ms: 10_000,
            text_index: true,
        }
    }

    #[test]
    fn derived_from_storage_defaults() {
        let storage = StorageConfig {
            url: Some("postgres://u@h/db".into()),
            ..StorageConfig::default()
        };
        let c = PostgresConfig::from_storage(&storage);
        assert_eq!(c, config("postgres://u@h/db"));
        assert!(c.validate().is_empty());
    }

    #[test]
    fn reports_every_problem_and_never_the_password() {
        let c = PostgresConfig {
            url: "postgres://u:s3cret@h:notaport/db".into(),
            tls_ca: Some("/nonexistent/ca.pem".into()),
            retention_days: 100_000,
            pool_size: 0,
            timeout_ms: 0,
            text_index: true,
        };
        let problems = c.validate();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "storage.url",
                "storage.tls_ca",
                "storage.retention_days",
                "storage.read_pool_size",
                "storage.timeout_ms"
            ]
        );
        let text = format!("{problems:?} {c:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(config("").validate()[0].key, "storage.url");
        assert!(
            config("postgres://u@h/db?sslmode=require")
                .validate()
                .is_empty()
        );
        let binding = config("postgres://u@h/db?channel_binding=require").validate();
        assert!(
            binding[0].message.contains("channel_binding"),
            "{binding:?}"
        );
    }

    #[test]
    fn tls_ca_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let c = PostgresConfig {
            tls_ca: Some(empty),
            ..config("postgres://u@h/db?sslmode=require")
        };
        let problems = c.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "storage.tls_ca");
        assert!(
            problems[0].message.contains("no CERTIFICATE"),
            "{problems:?}"
        );
    }

    #[test]
    fn describes_without_password() {
        let c = config("postgres://alice:s3cret@db.example:6543/metrics?sslmode=disable");
        let (_, target) = c.client_config().unwrap();
        assert_eq!(target, "postgres://alice@db.example:6543/metrics");
        let c = config("host=/run/postgresql user=bob password=s3cret");
        let (_, target) = c.client_config().unwrap();
        assert_eq!(target, "postgres://bob@/run/postgresql:5432/bob");
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
