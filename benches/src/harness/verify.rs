//! Counting what arrived: every line's sequence number (lost, repeated) and, where
//! the harness sees lines arrive, their end-to-end latency.
//!
//! Three ways, one per kind of store: the blackhole's count and checksum from the
//! collector's log; a scan of the SQLite store after the run; and a tail of the
//! required NDJSON file sink during the run, which also times each line.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::generator::{now_ns, parse_line};

/// Lost and repeated lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Lines written and never delivered.
    pub lost: u64,
    /// Deliveries beyond the first of a line.
    pub duplicates: u64,
}

/// How many times each sequence number was seen.
#[derive(Debug, Clone)]
pub struct Tally {
    seen: Vec<u8>,
    /// Messages that carry no sequence number (not the generator's).
    pub foreign: u64,
}

impl Tally {
    /// A tally of `lines` lines, none seen yet.
    pub fn new(lines: u64) -> Tally {
        Tally {
            seen: vec![0; lines as usize],
            foreign: 0,
        }
    }

    /// Counts one delivered message; returns its send time if it is the generator's.
    pub fn add(&mut self, message: &str) -> Option<i64> {
        match parse_line(message) {
            Some((seq, ts)) if (seq as usize) < self.seen.len() => {
                let n = &mut self.seen[seq as usize];
                *n = n.saturating_add(1);
                Some(ts)
            }
            _ => {
                self.foreign += 1;
                None
            }
        }
    }

    /// Lines delivered at least once.
    pub fn delivered(&self) -> u64 {
        self.seen.iter().filter(|&&n| n > 0).count() as u64
    }

    /// The lost and repeated lines.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for &n in &self.seen {
            match n {
                0 => c.lost += 1,
                n => c.duplicates += u64::from(n - 1),
            }
        }
        c
    }
}

/// From the blackhole's totals, logged when the collector stops: lost and repeated
/// lines, exact when the checksum matches (and then both zero).
pub fn blackhole(log: &str, lines: u64, checksum: u64) -> Result<(Counts, bool)> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("Blackhole sink totals."))
        .context("the collector logged no blackhole totals (did it stop cleanly?)")?;
    let value = |key: &str| -> Option<&str> {
        let rest = &line[line.find(key)? + key.len()..];
        let rest = rest.trim_start_matches(['=', '"', ':', ' ']);
        rest.split(|c: char| !c.is_ascii_alphanumeric()).next()
    };
    let events: u64 = value("events")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no event count in {line:?}"))?;
    let got = value("log_checksum")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .with_context(|| format!("no checksum in {line:?}"))?;
    let counts = Counts {
        lost: lines.saturating_sub(events),
        duplicates: events.saturating_sub(lines),
    };
    Ok((counts, events == lines && got == checksum))
}

/// Scans every log message in the SQLite store at `dir` (after the collector stopped).
pub fn sqlite(dir: &Path, lines: u64) -> Result<Tally> {
    let mut tally = Tally::new(lines);
    let mut files = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !(name.starts_with("events-") && name.ends_with(".db")) {
            continue;
        }
        files += 1;
        let db = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let mut statement = db.prepare("SELECT message FROM logs")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            tally.add(row.get_ref(0)?.as_str()?);
        }
    }
    if files == 0 {
        bail!("no day files in {}", dir.display());
    }
    Ok(tally)
}

/// Follows the file sink's NDJSON as it is written: counts each line and records
/// its latency (arrival here minus the time it was written), in microseconds.
pub struct Tail {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(Tally, Vec<u64>)>>,
}

impl Tail {
    /// Starts following `path` (created if missing).
    pub fn start(path: &Path, lines: u64) -> Result<Tail> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || follow(file, lines, &flag));
        Ok(Tail { stop, thread })
    }

    /// Stops following (after reading what is there) and returns the tally and the
    /// latencies.
    pub fn finish(self) -> Result<(Tally, Vec<u64>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the tail thread panicked"))?
    }
}

#[derive(serde::Deserialize)]
struct Record {
    #[serde(default)]
    message: Option<String>,
}

fn follow(mut file: std::fs::File, lines: u64, stop: &AtomicBool) -> Result<(Tally, Vec<u64>)> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut tally = Tally::new(lines);
    let mut latencies = Vec::with_capacity(lines as usize);
    let mut line = String::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let n = reader.read_line(&mut line)?;
        if n > 0 && line.ends_with('\n') {
            let arrived = now_ns();
            let record: Record = serde_json::from_str(&line)
                .with_context(|| format!("the sink wrote a line that is not JSON: {line:?}"))?;
            if let Some(ts) = record.message.as_deref().and_then(|m| tally.add(m)) {
                latencies.push(u64::try_from((arrived - ts) / 1_000).unwrap_or(0));
            }
            line.clear();
            continue;
        }
        // At the end (or in a partial line): wait for more, unless told to stop.
        if stopping {
            return Ok((tally, latencies));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// The `q` quantile (0..=1) of `sorted`.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_counts_lost_and_repeated_lines() {
        let mut t = Tally::new(4);
        for seq in [0, 1, 1, 3, 1] {
            let ts = t.add(&format!("text seq={seq:010} ts={:019}", 5));
            assert_eq!(ts, Some(5));
        }
        assert_eq!(t.add("another program's line"), None);
        assert_eq!(
            t.counts(),
            Counts {
                lost: 1,
                duplicates: 2
            }
        );
        assert_eq!((t.delivered(), t.foreign), (3, 1));
    }

    #[test]
    fn blackhole_totals_are_read_from_the_log() {
        let log = "2026 INFO monitoring_collector: Blackhole sink totals. events=3 \
                   log_checksum=\"00000000000000ff\"\n";
        assert_eq!(blackhole(log, 3, 255).unwrap(), (Counts::default(), true));
        let (counts, exact) = blackhole(log, 5, 255).unwrap();
        assert_eq!((counts.lost, exact), (2, false));
        assert!(blackhole("nothing", 3, 1).is_err());
    }

    #[test]
    fn quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 51);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
