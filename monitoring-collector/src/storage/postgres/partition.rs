//! Daily partitions of `logs`, `metrics` and `flows`: one per UTC day of receipt,
//! named `<table>_pYYYYMMDD`, covering `[day start, next day start)` of
//! `received_ns`.
//!
//! Partitioning by the day a batch was received (as the sqlite store's day files)
//! keeps each batch within one day's partitions and makes retention a matter of
//! dropping whole tables. Partitions are made ahead of time (today and tomorrow, at
//! start and on every retention pass) so that a commit rarely waits for DDL, and on
//! demand for any other day. Creation and dropping both take the advisory lock, so
//! collectors sharing the database never race on the catalogue; the lock wait is
//! kept short because partition DDL locks the parent table, and every commit queues
//! behind a waiting lock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use postgres::Client;

use super::schema::DDL_LOCK;
use crate::storage::sqlite::partition::{NS_PER_DAY, civil_from_days, days_from_civil};

/// The partitioned tables, in the order every transaction touches them (one order
/// everywhere, so that DDL and commits cannot deadlock on each other).
pub(crate) const TABLES: [&str; 3] = ["logs", "metrics", "flows"];

/// Longest wait for the locks partition DDL needs.
const DDL_LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// Name of `table`'s partition for `day`.
pub(crate) fn name(table: &str, day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{table}_p{y:04}{m:02}{d:02}")
}

/// `YYYY-MM-DD` of a day, for logs.
pub(crate) fn date(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The table and day of a partition name made by [`name`]; `None` for others.
fn parse(name: &str) -> Option<(&'static str, i64)> {
    let (table, date) = name.rsplit_once("_p")?;
    let table = TABLES.into_iter().find(|t| *t == table)?;
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = date[..4].parse().ok()?;
    let m: i64 = date[4..6].parse().ok()?;
    let d: i64 = date[6..].parse().ok()?;
    let day = days_from_civil(y, m, d);
    (civil_from_days(day) == (y, m, d)).then_some((table, day))
}

/// A partition bound: the first ns of `day`, or past the end of `bigint`.
fn bound(day: i64) -> String {
    match day.checked_mul(NS_PER_DAY) {
        Some(ns) => ns.to_string(),
        None if day < 0 => "MINVALUE".into(),
        None => "MAXVALUE".into(),
    }
}

/// Every partition of the three tables, by day: the tables that have one.
fn list(
    client: &mut impl postgres::GenericClient,
) -> Result<BTreeMap<i64, Vec<String>>, postgres::Error> {
    let rows = client.query(
        "SELECT child.relname::text
         FROM pg_inherits i JOIN pg_class child ON child.oid = i.inhrelid
         WHERE i.inhparent IN ('logs'::regclass, 'metrics'::regclass, 'flows'::regclass)",
        &[],
    )?;
    let mut days: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for row in rows {
        let relname: String = row.try_get(0)?;
        if let Some((_, day)) = parse(&relname) {
            days.entry(day).or_default().push(relname);
        }
    }
    Ok(days)
}

/// The days whose partitions are known to exist.
pub(crate) struct Partitions {
    known: RwLock<BTreeSet<i64>>,
}

impl Partitions {
    /// Reads the partitions that exist now.
    pub(crate) fn load(client: &mut Client) -> Result<Partitions, postgres::Error> {
        let known = list(client)?
            .into_iter()
            .filter(|(_, tables)| tables.len() == TABLES.len())
            .map(|(day, _)| day)
            .collect();
        Ok(Partitions {
            known: RwLock::new(known),
        })
    }

    /// The days known to have partitions, oldest first.
    pub(crate) fn known(&self) -> Vec<i64> {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        known.iter().copied().collect()
    }

    /// Forgets `day` (another collector dropped it), so that the next commit to it
    /// creates it again.
    pub(crate) fn forget(&self, day: i64) {
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        known.remove(&day);
    }

    /// Makes sure `days` have their partitions, creating what is missing.
    pub(crate) fn ensure(&self, client: &mut Client, days: &[i64]) -> Result<(), postgres::Error> {
        let missing: Vec<i64> = {
            let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
            days.iter()
                .copied()
                .filter(|d| !known.contains(d))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut tx = client.transaction()?;
        lock_for_ddl(&mut tx)?;
        let mut ddl = String::new();
        for &day in &missing {
            let (from, to) = (bound(day), bound(day.saturating_add(1)));
            for table in TABLES {
                let partition = name(table, day);
                ddl.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS \"{partition}\" PARTITION OF {table} \
                     FOR VALUES FROM ({from}) TO ({to});\n"
                ));
            }
        }
        tx.batch_execute(&ddl)?;
        tx.commit()?;
        for &day in &missing {
            tracing::info!(message = "Created storage partitions.", day = %date(day));
        }
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        known.extend(missing);
        Ok(())
    }

    /// Drops the partitions of every day before `first_kept_day`; returns those days.
    pub(crate) fn drop_before(
        &self,
        client: &mut Client,
        first_kept_day: i64,
    ) -> Result<Vec<i64>, postgres::Error> {
        let mut tx = client.transaction()?;
        lock_for_ddl(&mut tx)?;
        // Listed under the lock: another collector may just have dropped some.
        let old: Vec<(i64, Vec<String>)> = list(&mut tx)?
            .into_iter()
            .filter(|(day, _)| *day < first_kept_day)
            .collect();
        let mut ddl = String::new();
        for table in TABLES {
            for (_, names) in &old {
                for partition in names
                    .iter()
                    .filter(|n| parse(n).is_some_and(|(t, _)| t == table))
                {
                    ddl.push_str(&format!("DROP TABLE IF EXISTS \"{partition}\";\n"));
                }
            }
        }
        if !ddl.is_empty() {
            tx.batch_execute(&ddl)?;
        }
        tx.commit()?;
        let days: Vec<i64> = old.into_iter().map(|(day, _)| day).collect();
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        for day in &days {
            known.remove(day);
            tracing::info!(
                message = "Dropped storage partitions past retention.",
                day = %date(*day),
            );
        }
        Ok(days)
    }
}

/// Takes the advisory lock, with a short lock timeout for what follows.
fn lock_for_ddl(tx: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> {
    let ms = DDL_LOCK_TIMEOUT.as_millis();
    tx.batch_execute(&format!("SET LOCAL lock_timeout = {ms}"))?;
    tx.query_one("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        // 2026-11-28
        assert_eq!(name("logs", 20_785), "logs_p20261128");
        for day in [-1, 0, 20_785, 106_751, -106_752] {
            for table in TABLES {
                assert_eq!(parse(&name(table, day)), Some((table, day)), "{day}");
            }
        }
        assert_eq!(parse("logs_p20260231"), None);
        assert_eq!(parse("other_p20261128"), None);
        assert_eq!(parse("logs_p2026112"), None);
        assert_eq!(parse("logs_p2026112x"), None);
        assert_eq!(bound(1), NS_PER_DAY.to_string());
        assert_eq!(bound(106_752), "MAXVALUE");
        assert_eq!(bound(-106_753), "MINVALUE");
    }
}
