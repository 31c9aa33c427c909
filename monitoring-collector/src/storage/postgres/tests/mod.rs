//! Tests of [`PostgresStore`] against the real PostgreSQL of `scripts/services.sh`
//! (or `MONITORING_TEST_POSTGRES_URL`), each in a database of its own, created
//! here and dropped at the end: `write` for commits, deduplication, partitions,
//! retention and the inventory; `read` for searches, paging, metric series and
//! flows; `faults` for concurrent collectors and lost connections; `conformance`
//! for the suite every store passes; `tls` for TLS to a private server with
//! `ssl=on` (`private_server`). The checks every store shares live in
//! `storage::conformance`; `read` and `write` call them and add what is particular
//! to PostgreSQL.
//!
//! A server that does not answer fails the tests, never skips them.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{PostgresConfig, PostgresStore};
pub(super) use crate::storage::conformance::fixtures::{
    DAY, NS_PER_DAY, SEC, T0, all_logs, batch, flows, gauge, log, logs,
};
use crate::storage::{LogQuery, Store};

mod conformance;
mod faults;
mod private_server;
mod read;
mod tls;
mod write;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:55432/postgres";

/// The server's URL: `MONITORING_TEST_POSTGRES_URL` or the services.sh default.
fn server_url() -> String {
    std::env::var("MONITORING_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into())
}

/// `url` with its database replaced by `db` (URLs only, as the tests use).
fn with_database(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (head, rest) = url.split_at(scheme_end);
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{head}{authority}/{db}{query}")
}

/// A database of its own for one test, dropped (with its connections) at the end.
pub(super) struct TestDb {
    admin_url: String,
    name: String,
    /// The test database's URL.
    pub(super) url: String,
}

/// A client of `url`, failing the test with how to start the server if it does
/// not answer.
/// Runs `check` on a fresh store in a database of its own (named after the test).
pub(super) fn with_fresh(name: &str, check: &dyn Fn(&dyn Store)) {
    let tag: String = name.chars().take(24).collect();
    let db = TestDb::new(&tag);
    check(&db.open());
}

/// A client of `url`, failing the test with how to start the server if it does
/// not answer.
pub(super) fn client(url: &str) -> postgres::Client {
    let mut config = postgres::Config::from_str(url).expect("MONITORING_TEST_POSTGRES_URL");
    config.connect_timeout(Duration::from_secs(5));
    match config.connect(postgres::NoTls) {
        Ok(client) => client,
        Err(e) => panic!(
            "PostgreSQL at {url} does not answer ({}); start it with `scripts/services.sh start` \
             or point MONITORING_TEST_POSTGRES_URL at one",
            super::error::chain(&e)
        ),
    }
}

impl TestDb {
    /// Creates `mc_<tag>_<pid>_<n>`.
    pub(super) fn new(tag: &str) -> TestDb {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let admin_url = server_url();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("mc_{tag}_{}_{n}", std::process::id());
        let mut admin = client(&admin_url);
        // One statement each: neither may run inside a (multi-statement) transaction.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .expect("dropping a leftover test database");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("creating a test database");
        let url = with_database(&admin_url, &name);
        TestDb {
            admin_url,
            name,
            url,
        }
    }

    /// Store settings for this database.
    pub(super) fn config(&self) -> PostgresConfig {
        PostgresConfig {
            url: self.url.clone(),
            tls_ca: None,
            retention_days: 7,
            pool_size: 4,
            timeout_ms: 10_000,
            text_index: true,
        }
    }

    /// A store on this database.
    pub(super) fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.config()).expect("opening the store")
    }

    /// A plain client of this database, to look behind the store.
    pub(super) fn client(&self) -> postgres::Client {
        client(&self.url)
    }

    /// `SELECT count(*) FROM <table>`.
    pub(super) fn count(&self, table: &str) -> i64 {
        self.client()
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let dropped = client(&self.admin_url).batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ));
        if let Err(e) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

#[test]
fn test_urls_keep_authority_and_options() {
    assert_eq!(
        with_database("postgres://u@h:1/postgres", "x"),
        "postgres://u@h:1/x"
    );
    assert_eq!(
        with_database("postgres://u@h:1/postgres?sslmode=disable", "x"),
        "postgres://u@h:1/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}
