//! The load generator: numbered, timestamped loghub lines written into log files,
//! as fast as possible or at a fixed rate.
//!
//! Each line is `<loghub line> seq=NNNNNNNNNN ts=TTTTTTTTTTTTTTTTTTT`: the sequence
//! number lets the verifier count every line (lost, repeated), and `ts`, the
//! wall-clock nanoseconds at which it was written, gives its end-to-end latency.
//! They go at the end so that the collector recognises and parses each line as the
//! loghub line it is (a leading `key=value` would make every line logfmt).
//! The generator also sums the xxh3-64 hashes of the lines it wrote, as the
//! collector's blackhole sink does of the messages it gets.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use xxhash_rust::xxh3::xxh3_64;

/// What to write.
#[derive(Debug, Clone)]
pub struct Load {
    /// The files, written round-robin (they should exist, empty, before the agent
    /// starts, so that it finds them all at once).
    pub files: Vec<PathBuf>,
    /// Lines in all.
    pub lines: u64,
    /// Lines per second, or `None` for as fast as possible.
    pub rate: Option<u64>,
}

/// What was written.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Lines written.
    pub lines: u64,
    /// Bytes written (newlines included).
    pub bytes: u64,
    /// Wrapping sum of the xxh3-64 hashes of the lines (without their newlines).
    pub checksum: u64,
    /// When the first line was written.
    pub started: Instant,
    /// When the last line was written.
    pub finished: Instant,
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The end of each line: ` seq=` 10 digits ` ts=` 19 digits.
const MARK_LEN: usize = 5 + 10 + 4 + 19;

/// Reads a line's sequence number and send time back.
pub fn parse_line(message: &str) -> Option<(u64, i64)> {
    let mark = message.get(message.len().checked_sub(MARK_LEN)?..)?;
    let rest = mark.strip_prefix(" seq=")?;
    let seq = rest.get(..10)?.parse().ok()?;
    let ts = rest.get(10..)?.strip_prefix(" ts=")?.parse().ok()?;
    Some((seq, ts))
}

struct Sink {
    files: Vec<BufWriter<File>>,
    corpus: Vec<String>,
    line: String,
    next: u64,
    bytes: u64,
    checksum: u64,
}

impl Sink {
    /// Appends the next `n` lines, spread round-robin in runs of `run` lines per file.
    fn write(&mut self, n: u64, run: u64) -> Result<()> {
        use std::fmt::Write as _;
        let ts = now_ns();
        for _ in 0..n {
            let seq = self.next;
            let text = &self.corpus[(seq % self.corpus.len() as u64) as usize];
            self.line.clear();
            write!(self.line, "{text} seq={seq:010} ts={ts:019}")?;
            self.checksum = self.checksum.wrapping_add(xxh3_64(self.line.as_bytes()));
            self.line.push('\n');
            let file = (seq / run) as usize % self.files.len();
            self.files[file].write_all(self.line.as_bytes())?;
            self.bytes += self.line.len() as u64;
            self.next += 1;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        for f in &mut self.files {
            f.flush()?;
        }
        Ok(())
    }
}

/// Writes the load; blocks until the last line is written.
pub fn write(load: &Load, corpus: Vec<String>) -> Result<Written> {
    anyhow::ensure!(!corpus.is_empty(), "the loghub corpus is empty");
    let mut files = Vec::new();
    for path in &load.files {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        files.push(BufWriter::with_capacity(1 << 20, f));
    }
    let mut sink = Sink {
        files,
        corpus,
        line: String::with_capacity(4096),
        next: 0,
        bytes: 0,
        checksum: 0,
    };
    let started = Instant::now();
    match load.rate {
        None => {
            // Runs of 100 lines per file keep writes large with many files too.
            while sink.next < load.lines {
                let n = (load.lines - sink.next).min(10_000);
                sink.write(n, 100)?;
                sink.flush()?;
            }
        }
        Some(rate) => {
            // Every millisecond, the lines due by then: the agent sees a steady
            // trickle, as from a busy service, not bursts.
            let tick = Duration::from_millis(1);
            let mut next_tick = started;
            while sink.next < load.lines {
                let elapsed = started.elapsed().as_secs_f64();
                let due = ((elapsed * rate as f64) as u64 + 1).min(load.lines);
                if due > sink.next {
                    let n = due - sink.next;
                    sink.write(n, 1)?;
                    sink.flush()?;
                }
                next_tick += tick;
                if let Some(wait) = next_tick.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }
    }
    sink.flush()?;
    Ok(Written {
        lines: sink.next,
        bytes: sink.bytes,
        checksum: sink.checksum,
        started,
        finished: Instant::now(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_their_number_and_time_and_the_checksum_covers_them() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![dir.path().join("a.log"), dir.path().join("b.log")];
        let load = Load {
            files: files.clone(),
            lines: 250,
            rate: None,
        };
        let written = write(&load, vec!["one".into(), "two words".into()]).unwrap();
        assert_eq!(written.lines, 250);
        let mut checksum = 0u64;
        let mut seqs = Vec::new();
        let mut bytes = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            bytes += text.len() as u64;
            for line in text.lines() {
                checksum = checksum.wrapping_add(xxh3_64(line.as_bytes()));
                let (seq, ts) = parse_line(line).unwrap();
                assert!(ts > 0);
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..250).collect::<Vec<_>>());
        assert_eq!(checksum, written.checksum);
        assert_eq!(bytes, written.bytes);
    }

    #[test]
    fn a_fixed_rate_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let load = Load {
            files: vec![dir.path().join("a.log")],
            lines: 500,
            rate: Some(2_000),
        };
        let written = write(&load, vec!["x".into()]).unwrap();
        let took = written.finished - written.started;
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert_eq!(written.lines, 500);
    }
}
