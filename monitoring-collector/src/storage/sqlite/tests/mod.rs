//! End-to-end tests of [`SqliteStore`] against real SQLite files in a temp dir:
//! `write` for commits, deduplication, retention and the inventory; `read` for
//! searches, paging, pruning, metric series and flows. The checks every store
//! shares live in `storage::conformance`; these call them and add what is
//! particular to day files.

use std::path::Path;

use super::SqliteConfig;
use super::SqliteStore;
use super::partition::{NS_PER_DAY, file_name};
pub(super) use crate::storage::conformance::fixtures::{
    DAY, SEC, T0, all_logs, batch, flows, log, logs,
};
use crate::storage::{LogQuery, Store};

mod read;
mod write;

pub(super) fn config(dir: &Path) -> SqliteConfig {
    SqliteConfig {
        path: dir.to_path_buf(),
        ..SqliteConfig::default()
    }
}

pub(super) fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&config(dir)).unwrap()
}

/// Runs `check` on a fresh store in a temp dir of its own.
pub(super) fn with_fresh(_name: &str, check: &dyn Fn(&dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    check(&open(dir.path()));
}

pub(super) fn count_rows(dir: &Path, day: i64, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join(file_name(day))).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    crate::storage::conformance::check(&open(dir.path()));
}
