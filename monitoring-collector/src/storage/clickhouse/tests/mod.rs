//! Tests of [`ClickhouseStore`] against the real ClickHouse server that
//! `scripts/services.sh start` runs (`MONITORING_TEST_CLICKHOUSE_URL`, default
//! `http://127.0.0.1:58123/`). Each test works in a database of its own, dropped at
//! the end. Without the server they fail, saying how to start it.
//!
//! `quote` checks the quoting function against the server; `write` commits,
//! duplicates, inventory and retention; `read` searches, paging, metrics and flows;
//! `parity` the same data and queries against the SQLite store; `conformance` the
//! shared suite every store passes; `tls` https with an untrusted certificate. The
//! checks every store shares live in `storage::conformance`; `read` and `write` call
//! them and add what is particular to ClickHouse.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::client::{Client, Endpoint};
use super::rowbinary::RowReader;
use super::{ClickhouseConfig, ClickhouseStore};
pub(super) use crate::storage::conformance::fixtures::{
    DAY, NS_PER_DAY, SEC, T0, all_logs, batch, flow, flows, gauge, log, logs,
};
use crate::storage::{IngestBatch, LogQuery, LogRecord, Store};

mod conformance;
mod parity;
mod quote;
mod read;
mod tls;
mod write;

/// The server under test.
fn server_url() -> String {
    std::env::var("MONITORING_TEST_CLICKHOUSE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:58123/".to_string())
}

/// Runs `check` on a fresh store in a database of its own (named after the test).
pub(super) fn with_fresh(name: &str, check: &dyn Fn(&dyn Store)) {
    let tag: String = name.chars().take(24).collect();
    let db = TestDb::new(&tag);
    check(&db.open());
}

/// A database of its own for one test, dropped when this is dropped.
pub(super) struct TestDb {
    pub(super) config: ClickhouseConfig,
    pub(super) client: Client,
}

impl TestDb {
    /// Makes a fresh, empty database name for the test `name` and checks that the
    /// server answers.
    pub(super) fn new(name: &str) -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let url = server_url();
        let base = Endpoint::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let database = format!(
            "mon_test_{name}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let endpoint = base.with_database(&database).unwrap();
        let client = Client::new(endpoint.clone(), Duration::from_secs(60), 2);
        if let Err(e) = client.query("SELECT 1 FORMAT RowBinary") {
            panic!(
                "ClickHouse does not answer at {url} ({e}); start the test servers with \
                 `scripts/services.sh start` or set MONITORING_TEST_CLICKHOUSE_URL"
            );
        }
        client
            .execute(&format!("DROP DATABASE IF EXISTS {database}"))
            .unwrap();
        TestDb {
            config: ClickhouseConfig {
                endpoint,
                retention_days: 7,
                timeout: Duration::from_secs(60),
                idle_connections: 4,
            },
            client,
        }
    }

    /// Opens a store on the database, as a collector would (each call is another
    /// collector sharing it).
    pub(super) fn open(&self) -> ClickhouseStore {
        ClickhouseStore::open(&self.config).unwrap()
    }

    /// Runs `sql`, with `{db}` standing for the test database.
    pub(super) fn execute(&self, sql: &str) {
        let database = self.config.endpoint.database();
        self.client.execute(&sql.replace("{db}", database)).unwrap();
    }

    /// The first column of every row of `sql` (which must select one `UInt64`).
    pub(super) fn count(&self, sql: &str) -> u64 {
        let database = self.config.endpoint.database();
        let sql = sql.replace("{db}", database);
        let answer = self
            .client
            .query(&format!("{sql} FORMAT RowBinary"))
            .unwrap();
        RowReader::new(&answer).u64().unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let database = self.config.endpoint.database();
        if let Err(e) = self
            .client
            .execute(&format!("DROP DATABASE IF EXISTS {database}"))
        {
            eprintln!("could not drop test database {database}: {e}");
        }
    }
}
