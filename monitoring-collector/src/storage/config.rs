//! `[storage]`: which primary store, its keys, and the `[[storage.sinks]]`.

use std::path::PathBuf;

use monitoring_common::config::Problem;
use serde::Deserialize;

use super::sinks::SinkConfig;
use super::sqlite::SqliteConfig;

/// `[storage]`: the primary store events are committed to and queried from, and
/// the extra fan-out sinks.
///
/// The sqlite keys mirror [`SqliteConfig`] (which validates them) rather than
/// flattening it in: serde cannot combine `flatten` with `deny_unknown_fields`, and
/// unknown keys must stay errors with a line number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The primary store: `"sqlite"` (default, embedded, one collector),
    /// `"postgres"` or `"clickhouse"` (shared by any number of collectors).
    pub backend: StorageBackend,
    /// sqlite: directory of the store's files, created if missing; relative paths are
    /// relative to the working directory. Default `"var/collector"`.
    pub path: PathBuf,
    /// postgres: a libpq-style URL, `postgres://user:password@host:port/database`;
    /// clickhouse: the HTTP interface with the database,
    /// `http://user:password@host:8123/?database=monitoring`. No default.
    pub url: Option<String>,
    /// postgres: PEM file of the CA certificate(s) that the server's certificate
    /// must chain to when TLS is used (`sslmode=prefer` or `require` in `url`);
    /// the host name is checked too. Default: none (the system's root certificates).
    pub tls_ca: Option<PathBuf>,
    /// Days of data kept, by day; older partitions (sqlite day files, postgres and
    /// clickhouse daily partitions) are dropped at start and hourly. `0` keeps
    /// everything. Default 7.
    pub retention_days: u32,
    /// sqlite: how long a writer waits for a lock before failing (the agent then
    /// retries), in milliseconds. Default 5000.
    pub busy_timeout_ms: u64,
    /// sqlite: idle read connections kept per day file for API queries; postgres:
    /// connections in the pool. Default 4.
    pub read_pool_size: usize,
    /// postgres and clickhouse: connect, statement and request timeout, ms. Default 10000.
    pub timeout_ms: u64,
    /// postgres: keep a trigram (pg_trgm) index over log messages, so that word
    /// searches take milliseconds on large tables; it makes log ingest about 4x
    /// slower. false drops it. Default true.
    pub text_index: bool,
    /// `[[storage.sinks]]`: more places to send events. Default: none.
    pub sinks: Vec<SinkConfig>,
}

/// Storage backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The embedded SQLite store.
    #[default]
    Sqlite,
    /// PostgreSQL: daily partitions, bulk loads with COPY.
    Postgres,
    /// ClickHouse over its HTTP interface: MergeTree tables partitioned by day.
    Clickhouse,
    /// No primary store: batches go only to `[[storage.sinks]]` (see
    /// [`super::none`]).
    None,
}

impl StorageBackend {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageBackend::Sqlite => "sqlite",
            StorageBackend::Postgres => "postgres",
            StorageBackend::Clickhouse => "clickhouse",
            StorageBackend::None => "none",
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        let sqlite = SqliteConfig::default();
        StorageConfig {
            backend: StorageBackend::Sqlite,
            path: sqlite.path,
            url: None,
            tls_ca: None,
            retention_days: sqlite.retention_days,
            busy_timeout_ms: sqlite.busy_timeout_ms,
            read_pool_size: sqlite.read_pool_size,
            timeout_ms: 10_000,
            text_index: true,
            sinks: Vec::new(),
        }
    }
}

impl StorageConfig {
    /// The sqlite store's settings.
    pub fn sqlite(&self) -> SqliteConfig {
        SqliteConfig {
            path: self.path.clone(),
            retention_days: self.retention_days,
            busy_timeout_ms: self.busy_timeout_ms,
            read_pool_size: self.read_pool_size,
        }
    }

    /// Problems with this section, keyed `storage.<key>`.
    pub fn validate(&self) -> Vec<Problem> {
        let backend = self.backend.as_str();
        let mut problems = match self.backend {
            StorageBackend::Sqlite => {
                let mut p = self.sqlite().validate();
                if self.url.is_some() {
                    p.push(Problem::new(
                        "storage.url",
                        "does not apply to backend sqlite (it uses storage.path)",
                    ));
                }
                p
            }
            StorageBackend::Postgres | StorageBackend::Clickhouse => {
                let mut p = Vec::new();
                match self.url.as_deref() {
                    None | Some("") => p.push(Problem::new(
                        "storage.url",
                        format!("is required for backend {backend}"),
                    )),
                    Some(_) => {}
                }
                if self.path != SqliteConfig::default().path {
                    p.push(Problem::new(
                        "storage.path",
                        format!("does not apply to backend {backend} (it uses storage.url)"),
                    ));
                }
                if !(1..=64).contains(&self.read_pool_size) {
                    p.push(Problem::new(
                        "storage.read_pool_size",
                        "must be between 1 and 64",
                    ));
                }
                p
            }
            StorageBackend::None => {
                let mut p = Vec::new();
                if !self.sinks.iter().any(|s| s.required) {
                    p.push(Problem::new(
                        "storage.backend",
                        "\"none\" keeps nothing itself: add a [[storage.sinks]] with \
                         required = true, so that an acknowledgement means a sink has the batch",
                    ));
                }
                if self.url.is_some() {
                    p.push(Problem::new(
                        "storage.url",
                        "does not apply to backend none",
                    ));
                }
                p
            }
        };
        if let Some(url) = self.url.as_deref().filter(|u| !u.is_empty()) {
            // The messages never repeat the URL, which may hold a password.
            match self.backend {
                StorageBackend::Clickhouse => {
                    if let Err(error) = super::clickhouse::Endpoint::parse(url) {
                        problems.push(Problem::new("storage.url", error.to_string()));
                    }
                }
                StorageBackend::Postgres => {
                    problems.extend(super::postgres::PostgresConfig::from_storage(self).validate());
                }
                StorageBackend::Sqlite | StorageBackend::None => {}
            }
        }
        if self.tls_ca.is_some() && self.backend != StorageBackend::Postgres {
            problems.push(Problem::new(
                "storage.tls_ca",
                format!("applies to backend postgres only, not {backend}"),
            ));
        }
        if !self.text_index && self.backend != StorageBackend::Postgres {
            problems.push(Problem::new(
                "storage.text_index",
                format!("applies to backend postgres only, not {backend}"),
            ));
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            problems.push(Problem::new(
                "storage.timeout_ms",
                "must be between 1 and 600000",
            ));
        }
        problems.extend(super::sinks::config::validate_all(&self.sinks));
        problems
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> StorageConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn tls_ca_is_read_for_postgres_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["ca.test".to_owned()]).unwrap();
        std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
        let postgres = parse(&format!(
            "backend = \"postgres\"\nurl = \"postgres://u@h/db?sslmode=require\"\ntls_ca = {:?}",
            ca.display().to_string()
        ));
        assert_eq!(postgres.tls_ca.as_deref(), Some(ca.as_path()));
        assert!(postgres.validate().is_empty(), "{:?}", postgres.validate());

        let missing = StorageConfig {
            tls_ca: Some(dir.path().join("missing.pem")),
            ..postgres.clone()
        };
        let keys: Vec<String> = missing.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["storage.tls_ca"]);

        let sqlite = StorageConfig {
            tls_ca: Some(ca),
            ..StorageConfig::default()
        };
        let problems = sqlite.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "storage.tls_ca");
        assert!(
            problems[0].message.contains("postgres only"),
            "{problems:?}"
        );
    }

    #[test]
    fn backend_none_needs_a_required_sink() {
        let alone = parse("backend = \"none\"");
        let problems = alone.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "storage.backend");
        assert!(
            problems[0].message.contains("required = true"),
            "{problems:?}"
        );

        let best_effort = parse("backend = \"none\"\n[[sinks]]\ntype = \"blackhole\"\n");
        assert_eq!(best_effort.validate().len(), 1);

        let forwarding =
            parse("backend = \"none\"\n[[sinks]]\ntype = \"blackhole\"\nrequired = true\n");
        assert!(
            forwarding.validate().is_empty(),
            "{:?}",
            forwarding.validate()
        );
        assert_eq!(forwarding.backend.as_str(), "none");
    }
}
