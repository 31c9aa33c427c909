//! Day files: one SQLite file per UTC day of receipt, each with its own writer
//! connection, a small pool of read connections and the time bounds of its events.
//!
//! Partitioning by the day a batch was *received* (not by event time) keeps every
//! batch in exactly one file together with its dedup record, and makes retention a
//! matter of deleting files. Events can carry any timestamp, so each file records
//! the min/max event time per kind and queries consult those bounds to skip files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use rusqlite::Connection;

use super::error::{StorageResult, db_at, io_at};
use super::schema::{DbKind, ReaderPool, open_writer};

/// Nanoseconds in a day.
pub(crate) const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The UTC day number (days since 1970-01-01) of a time in ns.
pub(crate) fn day_of(ns: i64) -> i64 {
    ns.div_euclid(NS_PER_DAY)
}

/// Year, month, day of a day number (proleptic Gregorian; H. Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day number of a date; the inverse of [`civil_from_days`].
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// File name of a day's partition: `events-YYYY-MM-DD.db`.
pub(crate) fn file_name(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("events-{y:04}-{m:02}-{d:02}.db")
}

/// The day of a partition file name, or `None` for any other file.
pub(crate) fn parse_file_name(name: &str) -> Option<i64> {
    let date = name.strip_prefix("events-")?.strip_suffix(".db")?;
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = days_from_civil(y, m, d);
    // Reject dates like 02-31 that do not round-trip.
    (file_name(day) == name).then_some(day)
}

/// The event kinds whose time bounds are tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Logs.
    Log = 0,
    /// Metric samples.
    Metric = 1,
    /// Flows.
    Flow = 2,
}

impl Kind {
    /// The key in the `meta` table.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Log => "log",
            Kind::Metric => "metric",
            Kind::Flow => "flow",
        }
    }

    fn from_str(s: &str) -> Option<Kind> {
        match s {
            "log" => Some(Kind::Log),
            "metric" => Some(Kind::Metric),
            "flow" => Some(Kind::Flow),
            _ => None,
        }
    }
}

/// Min/max event timestamps per kind; `None` where the file holds none of it.
pub(crate) type Bounds = [Option<(i64, i64)>; 3];

/// Locks a mutex, carrying on after a panic elsewhere: every guarded value here (a
/// connection, a pool, bounds) stays consistent because SQLite rolls back.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One day file.
pub(crate) struct Partition {
    /// Its UTC day of receipt.
    pub(crate) day: i64,
    /// Its file.
    pub(crate) path: PathBuf,
    busy: Duration,
    /// Opened on first write; closed when retired.
    writer: Mutex<Option<Connection>>,
    /// Set before the connections close, so that none opens again.
    retired: AtomicBool,
    readers: ReaderPool,
    bounds: Mutex<Bounds>,
    /// The `(agent, stream)` pairs of the batches in this file: a batch can only be
    /// a duplicate here if its stream is, which spares most files a lookup.
    streams: Mutex<HashMap<Arc<str>, HashSet<u64>>>,
    /// Reads so far, so that tests can see which files a query touched.
    #[cfg(test)]
    pub(crate) reads: std::sync::atomic::AtomicUsize,
}

impl Partition {
    /// Opens (creating if needed) the file, applies the schema and reads its bounds.
    /// The writer is kept only if `keep_writer` (the file is about to be written).
    fn open(
        day: i64,
        path: PathBuf,
        busy: Duration,
        pool_size: usize,
        keep_writer: bool,
    ) -> StorageResult<Self> {
        let conn = open_writer(&path, DbKind::Partition, busy)?;
        let bounds = read_bounds(&conn, &path)?;
        let streams = read_streams(&conn, &path)?;
        Ok(Partition {
            day,
            busy,
            writer: Mutex::new(keep_writer.then_some(conn)),
            retired: AtomicBool::new(false),
            readers: ReaderPool::new(path.clone(), busy, pool_size),
            bounds: Mutex::new(bounds),
            streams: Mutex::new(streams),
            #[cfg(test)]
            reads: std::sync::atomic::AtomicUsize::new(0),
            path,
        })
    }

    /// Runs `f` with the writer connection (opened on first use), holding the lock
    /// for the duration: SQLite has one writer per file. `Ok(None)` when the file has
    /// been retired meanwhile; the caller then goes to a fresh partition.
    pub(crate) fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> StorageResult<T>,
    ) -> StorageResult<Option<T>> {
        let mut slot = lock(&self.writer);
        if self.retired.load(Ordering::Acquire) {
            return Ok(None);
        }
        if slot.is_none() {
            *slot = Some(open_writer(&self.path, DbKind::Partition, self.busy)?);
        }
        match slot.as_mut() {
            Some(conn) => f(conn).map(Some),
            None => Ok(None),
        }
    }

    /// Runs `f` with a pooled read connection. Reads never wait for the writer (WAL).
    pub(crate) fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> StorageResult<T>,
    ) -> StorageResult<T> {
        #[cfg(test)]
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.readers.with(f)
    }

    /// The bounds of `kind` in this file.
    pub(crate) fn bounds(&self, kind: Kind) -> Option<(i64, i64)> {
        lock(&self.bounds)[kind as usize]
    }

    /// Whether this file may hold `kind` events in `[from, to)`.
    pub(crate) fn overlaps(&self, kind: Kind, from: Option<i64>, to: Option<i64>) -> bool {
        match self.bounds(kind) {
            None => false,
            Some((min, max)) => from.is_none_or(|f| max >= f) && to.is_none_or(|t| min < t),
        }
    }

    /// Whether this file may hold batches of `stream` from `agent`.
    pub(crate) fn may_hold_stream(&self, agent: &str, stream: u64) -> bool {
        lock(&self.streams)
            .get(agent)
            .is_some_and(|s| s.contains(&stream))
    }

    /// Notes a stream as present. Called before the transaction commits, so that the
    /// set may be too large (costing a lookup) but never misses a stream.
    pub(crate) fn note_stream(&self, agent: &Arc<str>, stream: u64) {
        let mut streams = lock(&self.streams);
        match streams.get_mut(&**agent) {
            Some(set) => {
                set.insert(stream);
            }
            None => {
                streams.insert(Arc::clone(agent), HashSet::from([stream]));
            }
        }
    }

    /// Widens the in-memory bounds. Called before the transaction commits, so that
    /// bounds may be too wide (harmless) but never too narrow.
    pub(crate) fn widen(&self, add: &Bounds) {
        let mut bounds = lock(&self.bounds);
        for (have, new) in bounds.iter_mut().zip(add) {
            if let Some((lo, hi)) = *new {
                *have = Some(match *have {
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                    None => (lo, hi),
                });
            }
        }
    }

    /// Closes every connection and marks the partition so that no new one opens.
    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.readers.close();
        // Waits for a commit in progress, which then completes before the file goes.
        *lock(&self.writer) = None;
    }
}

fn read_streams(conn: &Connection, path: &Path) -> StorageResult<HashMap<Arc<str>, HashSet<u64>>> {
    let err = || db_at("reading batch streams", path);
    let mut stmt = conn
        .prepare("SELECT DISTINCT agent_id, stream_id FROM batches")
        .map_err(err())?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(err())?;
    let mut streams: HashMap<Arc<str>, HashSet<u64>> = HashMap::new();
    for row in rows {
        let (agent, stream) = row.map_err(err())?;
        // Stored bit for bit from the u64 (see `write`).
        let stream = u64::from_ne_bytes(stream.to_ne_bytes());
        streams.entry(Arc::from(agent)).or_default().insert(stream);
    }
    Ok(streams)
}

fn read_bounds(conn: &Connection, path: &Path) -> StorageResult<Bounds> {
    let mut bounds: Bounds = [None; 3];
    let mut stmt = conn
        .prepare("SELECT kind, min_ts, max_ts FROM meta")
        .map_err(db_at("reading partition bounds", path))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(db_at("reading partition bounds", path))?;
    for row in rows {
        let (kind, min, max) = row.map_err(db_at("reading partition bounds", path))?;
        if let Some(kind) = Kind::from_str(&kind) {
            bounds[kind as usize] = Some((min, max));
        }
    }
    Ok(bounds)
}

/// All partitions of the store, by day.
pub(crate) struct Partitions {
    dir: PathBuf,
    busy: Duration,
    pool_size: usize,
    map: RwLock<BTreeMap<i64, Arc<Partition>>>,
}

impl Partitions {
    /// Finds the day files already in `dir` and opens them (schema upgrade, bounds).
    pub(crate) fn load(dir: &Path, busy: Duration, pool_size: usize) -> StorageResult<Self> {
        let mut map = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(io_at("listing", dir))?;
        for entry in entries {
            let entry = entry.map_err(io_at("listing", dir))?;
            let name = entry.file_name();
            let Some(day) = name.to_str().and_then(parse_file_name) else {
                continue;
            };
            let partition = Partition::open(day, entry.path(), busy, pool_size, false)?;
            map.insert(day, Arc::new(partition));
        }
        Ok(Partitions {
            dir: dir.to_path_buf(),
            busy,
            pool_size,
            map: RwLock::new(map),
        })
    }

    /// The partition of `day`, created if it does not exist yet.
    pub(crate) fn get_or_create(&self, day: i64) -> StorageResult<Arc<Partition>> {
        if let Some(p) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&day)
        {
            return Ok(Arc::clone(p));
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = map.get(&day) {
            return Ok(Arc::clone(p));
        }
        // Created under the lock (once a day) so that two writers never open one file.
        let path = self.dir.join(file_name(day));
        let partition = Arc::new(Partition::open(day, path, self.busy, self.pool_size, true)?);
        tracing::info!(message = "Created storage partition.", path = %partition.path.display());
        map.insert(day, Arc::clone(&partition));
        Ok(partition)
    }

    /// A snapshot of all partitions, oldest day first.
    pub(crate) fn all(&self) -> Vec<Arc<Partition>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.values().cloned().collect()
    }

    /// Removes every partition of a day before `first_kept_day`, closes its
    /// connections (waiting for a commit in progress) and deletes its files.
    /// Returns the days dropped.
    pub(crate) fn drop_before(&self, first_kept_day: i64) -> StorageResult<Vec<i64>> {
        let removed: Vec<Arc<Partition>> = {
            let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
            let kept = map.split_off(&first_kept_day);
            std::mem::replace(&mut *map, kept).into_values().collect()
        };
        let mut dropped = Vec::with_capacity(removed.len());
        for partition in removed {
            partition.retire();
            for suffix in ["", "-wal", "-shm"] {
                let mut name = partition.path.clone().into_os_string();
                name.push(suffix);
                let file = PathBuf::from(name);
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_at("deleting partition", &file)(e)),
                }
            }
            tracing::info!(message = "Dropped storage partition past retention.", path = %partition.path.display());
            dropped.push(partition.day);
        }
        Ok(dropped)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn day_names_round_trip() {
        assert_eq!(file_name(0), "events-1970-01-01.db");
        // 2026-11-28T12:00:00Z
        let ns = 1_795_867_200 * 1_000_000_000;
        assert_eq!(file_name(day_of(ns)), "events-2026-11-28.db");
        for day in [-1, 0, 59, 60, 365, 10_957, 11_016, 20_000, 2_932_896] {
            assert_eq!(parse_file_name(&file_name(day)), Some(day), "{day}");
        }
        assert_eq!(parse_file_name("events-2026-02-31.db"), None);
        assert_eq!(parse_file_name("main.db"), None);
        assert_eq!(parse_file_name("events-2026-11-28.db-wal"), None);
        assert_eq!(day_of(-1), -1);
    }

    #[test]
    fn bounds_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let parts = Partitions::load(dir.path(), Duration::from_secs(1), 2).unwrap();
        let p = parts.get_or_create(3).unwrap();
        assert!(!p.overlaps(Kind::Log, None, None));
        p.widen(&[Some((10, 20)), None, None]);
        assert!(p.overlaps(Kind::Log, None, None));
        assert!(p.overlaps(Kind::Log, Some(20), Some(21)));
        assert!(!p.overlaps(Kind::Log, Some(21), None));
        assert!(!p.overlaps(Kind::Log, None, Some(10)));
        assert!(p.overlaps(Kind::Log, None, Some(11)));
        assert!(!p.overlaps(Kind::Metric, None, None));
    }
}
