//! The primary stores a collector can run on, each with a fresh, empty database on
//! the real servers `scripts/services.sh` starts (PostgreSQL, ClickHouse), so that a
//! test can run the same scenario on every backend.
//!
//! The servers' addresses come from `MONITORING_TEST_POSTGRES_URL` (see
//! [`PgDatabase`]) and `MONITORING_TEST_CLICKHOUSE_URL` (defaults: the ports of
//! scripts/services.sh). A
//! server that does not answer fails the test with a message saying how to start
//! it: these tests never skip.

use crate::*;

/// Default ClickHouse HTTP interface of scripts/services.sh.
const CLICKHOUSE_URL: &str = "http://127.0.0.1:58123/";

/// A primary store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Clickhouse,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::Clickhouse];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Clickhouse => "clickhouse",
        }
    }
}

/// A fresh database for one test; dropped (best effort) with it.
pub struct TestStore {
    pub backend: Backend,
    /// The `[storage]` keys of a collector using it.
    pub storage: String,
    /// ClickHouse: the statement that drops the database.
    drop_sql: Option<String>,
    /// PostgreSQL: the database (dropped by its own `Drop`).
    pub postgres: Option<PgDatabase>,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn unique_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}_{}_{}", std::process::id(), n)
}

/// Posts one statement to ClickHouse's HTTP interface.
fn clickhouse(url: &str, sql: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(url)
            .body(sql.to_string())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .with_context(|| {
                format!("ClickHouse at {url} does not answer (scripts/services.sh start)")
            })?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("ClickHouse at {url} refused {sql:?}: {status} {body}");
        }
        Ok(())
    })
}

impl TestStore {
    /// A new, empty store of `backend` (sqlite: a directory under `dir`).
    pub fn create(backend: Backend, dir: &Path) -> Result<TestStore> {
        match backend {
            Backend::Sqlite => Ok(TestStore {
                backend,
                storage: format!(
                    "backend = \"sqlite\"\npath = \"{}\"",
                    dir.join("store").display()
                ),
                drop_sql: None,
                postgres: None,
            }),
            Backend::Postgres => {
                let db = PgDatabase::create(&unique_name("store"))?;
                Ok(TestStore {
                    backend,
                    storage: db.storage_keys(),
                    drop_sql: None,
                    postgres: Some(db),
                })
            }
            Backend::Clickhouse => {
                let server = env_or("MONITORING_TEST_CLICKHOUSE_URL", CLICKHOUSE_URL);
                let db = unique_name("e2e");
                clickhouse(&server, &format!("CREATE DATABASE {db}"))?;
                let base = server.trim_end_matches('/');
                Ok(TestStore {
                    backend,
                    storage: format!("backend = \"clickhouse\"\nurl = \"{base}/?database={db}\""),
                    drop_sql: Some(format!("DROP DATABASE IF EXISTS {db}")),
                    postgres: None,
                })
            }
        }
    }

    /// Options for a collector on this store.
    pub fn collector_options(&self) -> CollectorOptions {
        CollectorOptions {
            store: self.storage.clone(),
            ..CollectorOptions::default()
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Some(sql) = &self.drop_sql else {
            return;
        };
        // Leftover databases only cost disk on a test machine: never fail a test here.
        let result = clickhouse(
            &env_or("MONITORING_TEST_CLICKHOUSE_URL", CLICKHOUSE_URL),
            sql,
        );
        if let Err(e) = result {
            eprintln!("could not drop a test database: {e:#}");
        }
    }
}
