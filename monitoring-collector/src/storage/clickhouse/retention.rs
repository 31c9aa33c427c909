//! Retention by dropping whole day partitions (ClickHouse 18.16 has no TTL).
//!
//! The rule is the SQLite store's: a day goes once all of it is older than the
//! retention period. Partitions are found in `system.parts` and dropped by id;
//! dropping a partition that another collector dropped a moment before is a no-op,
//! so any number of collectors may run this at once.

use std::collections::BTreeSet;

use super::client::{ClickhouseError, Client};
use super::rowbinary::RowReader;
use super::schema::{DAY_TABLES, qualified};
use super::sql::quote;
use super::write::{NS_PER_DAY, day_of};

/// Drops the partitions of days before the first day kept; returns how many days
/// were dropped (in any table).
pub(crate) fn drop_expired(
    client: &Client,
    retention_days: u32,
    now_ns: i64,
) -> Result<usize, ClickhouseError> {
    if retention_days == 0 {
        return Ok(0);
    }
    let keep_ns = i64::from(retention_days).saturating_mul(NS_PER_DAY);
    let first_kept_day = day_of(now_ns.saturating_sub(keep_ns));
    let database = client.endpoint().database();
    let tables: Vec<String> = DAY_TABLES.iter().map(|t| quote(t)).collect();
    let answer = client.query(&format!(
        "SELECT DISTINCT table, partition_id, toUInt16(toDate(partition)) FROM system.parts \
         WHERE database = {} AND active AND table IN ({}) FORMAT RowBinary",
        quote(database),
        tables.join(", ")
    ))?;
    let mut r = RowReader::new(&answer);
    let mut days = BTreeSet::new();
    while !r.at_end() {
        let (table, partition_id, day) = (r.string()?, r.string()?, r.u16()?);
        if i64::from(day) >= first_kept_day {
            continue;
        }
        client.execute(&format!(
            "ALTER TABLE {} DROP PARTITION ID {}",
            qualified(database, &table),
            quote(&partition_id)
        ))?;
        tracing::info!(
            message = "Dropped ClickHouse partition past retention.",
            table = %table,
            partition = %partition_id,
        );
        days.insert(day);
    }
    Ok(days.len())
}
