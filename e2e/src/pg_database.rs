//! A database of its own on the test PostgreSQL server (`scripts/services.sh`, or
//! `MONITORING_TEST_POSTGRES_URL`), for a collector that stores there; dropped at
//! the end. A server that does not answer fails the test, naming how to start it.

use std::str::FromStr;

use crate::*;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:55432/postgres";

/// A test database.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

fn connect(url: &str) -> Result<postgres::Client> {
    let mut config = postgres::Config::from_str(url).context("MONITORING_TEST_POSTGRES_URL")?;
    config.connect_timeout(Duration::from_secs(5));
    config.connect(postgres::NoTls).with_context(|| {
        format!(
            "PostgreSQL at {url} does not answer; start it with `scripts/services.sh start` \
             or point MONITORING_TEST_POSTGRES_URL at one"
        )
    })
}

/// `url` with its database replaced by `db`.
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

impl PgDatabase {
    /// Creates `e2e_<tag>_<pid>`.
    pub fn create(tag: &str) -> Result<PgDatabase> {
        let admin_url =
            std::env::var("MONITORING_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let name = format!("e2e_{tag}_{}", std::process::id());
        let mut admin = connect(&admin_url)?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))?;
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\""))?;
        let url = with_database(&admin_url, &name);
        Ok(PgDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// The `[storage]` keys of a collector storing here ([`CollectorOptions::store`]).
    pub fn storage_keys(&self) -> String {
        format!(
            "backend = \"postgres\"\nurl = \"{}\"\nread_pool_size = 4\ntimeout_ms = 3000",
            self.url
        )
    }

    /// A client of this database.
    pub fn client(&self) -> Result<postgres::Client> {
        connect(&self.url)
    }

    /// Terminates every connection to this database (but the one asking); how many.
    pub fn terminate_connections(&self) -> Result<i64> {
        let row = self.client()?.query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )?;
        Ok(row.get(0))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let dropped = connect(&self.admin_url).and_then(|mut admin| {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .map_err(Into::into)
        });
        if let Err(e) = dropped {
            eprintln!("could not drop test database {}: {e:#}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_authority_and_options() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
