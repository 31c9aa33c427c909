//! Configuration of the embedded SQLite store: the `[storage]` keys it reads.

use std::path::PathBuf;

use monitoring_common::config::Problem;
use serde::{Deserialize, Serialize};

/// Longest retention accepted: a century is surely a typo for "forever" (0).
const MAX_RETENTION_DAYS: u32 = 36_500;

/// Settings of the SQLite store, read from `[storage]` beside `backend = "sqlite"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// Directory holding `main.db` and one `events-YYYY-MM-DD.db` per UTC day of
    /// receipt; created if missing. Relative paths are relative to the working
    /// directory. Default: `"var/collector"`.
    pub path: PathBuf,
    /// Days of data to keep, counted by the day a batch was received; whole day
    /// files are deleted once all of their day is older than this. `0` keeps
    /// everything. Default: `7`.
    pub retention_days: u32,
    /// How long a connection waits for a lock held by another connection before it
    /// gives up with "database is locked", in milliseconds. Default: `5000`.
    pub busy_timeout_ms: u64,
    /// Idle read connections kept open per day file for queries. Default: `4`.
    pub read_pool_size: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: PathBuf::from("var/collector"),
            retention_days: 7,
            busy_timeout_ms: 5_000,
            read_pool_size: 4,
        }
    }
}

impl SqliteConfig {
    /// All problems with these settings, keyed `storage.<field>`. Pure: no I/O.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.path.as_os_str().is_empty() {
            problems.push(Problem::new(
                "storage.path",
                "must name a directory (default \"var/collector\")",
            ));
        }
        if self.retention_days > MAX_RETENTION_DAYS {
            problems.push(Problem::new(
                "storage.retention_days",
                format!("must be at most {MAX_RETENTION_DAYS} (use 0 to keep data forever)"),
            ));
        }
        if self.busy_timeout_ms == 0 || self.busy_timeout_ms > 600_000 {
            problems.push(Problem::new(
                "storage.busy_timeout_ms",
                "must be between 1 and 600000 milliseconds",
            ));
        }
        if self.read_pool_size == 0 || self.read_pool_size > 64 {
            problems.push(Problem::new(
                "storage.read_pool_size",
                "must be between 1 and 64",
            ));
        }
        problems
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = SqliteConfig::default();
        assert!(c.validate().is_empty());
        assert_eq!(c.path, PathBuf::from("var/collector"));
        assert_eq!(c.retention_days, 7);
    }

    #[test]
    fn parses_partial_table_and_rejects_unknown_keys() {
        let c: SqliteConfig = toml::from_str("retention_days = 0\npath = \"/d\"").unwrap();
        assert_eq!(c.retention_days, 0);
        assert_eq!(c.path, PathBuf::from("/d"));
        assert_eq!(c.busy_timeout_ms, 5_000);
        assert!(toml::from_str::<SqliteConfig>("retention = 3").is_err());
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let c = SqliteConfig {
            path: PathBuf::new(),
            retention_days: 100_000,
            busy_timeout_ms: 0,
            read_pool_size: 0,
        };
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "storage.path",
                "storage.retention_days",
                "storage.busy_timeout_ms",
                "storage.read_pool_size"
            ]
        );
    }
}
