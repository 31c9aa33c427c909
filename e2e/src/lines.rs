//! Numbered log lines: the corpus, writers, and the tally of what arrived.

use crate::*;

/// The loghub sample lines shipped in ../shared/data, CR/LF stripped, non-empty.
pub fn loghub_lines() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub");
    let mut lines = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    names.sort();
    for p in names {
        let bytes = std::fs::read(&p).unwrap();
        for l in String::from_utf8_lossy(&bytes).split(['\n', '\r']) {
            if !l.trim().is_empty() {
                // Keep lines short enough that the test is about delivery, not truncation.
                lines.push(l.chars().take(400).collect());
            }
        }
    }
    lines
}

/// The line with sequence number `seq`, built from the loghub corpus.
pub fn numbered_line(corpus: &[String], seq: u64) -> String {
    format!("seq={seq:08} {}", corpus[(seq as usize) % corpus.len()])
}

/// Appends lines to a file, flushing each chunk so the agent sees them.
pub struct LineWriter {
    file: std::fs::File,
}

impl LineWriter {
    pub fn open(path: &Path) -> Result<LineWriter> {
        Ok(LineWriter {
            file: std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        })
    }

    pub fn write_lines(&mut self, lines: impl Iterator<Item = String>) -> Result<()> {
        let mut buf = String::new();
        for l in lines {
            buf.push_str(&l);
            buf.push('\n');
        }
        self.file.write_all(buf.as_bytes())?;
        Ok(())
    }
}

/// How many of the sequence numbers `0..expected` arrived, and how many extra copies.
#[derive(Debug)]
pub struct Tally {
    pub expected: u64,
    pub missing: Vec<u64>,
    pub duplicates: u64,
}

/// Counts `seq=NNNNNNNN` markers in the messages.
pub fn tally(messages: &[String], expected: u64) -> Tally {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for m in messages {
        if let Some(n) = m
            .strip_prefix("seq=")
            .and_then(|r| r.get(..8))
            .and_then(|d| d.parse().ok())
        {
            *seen.entry(n).or_default() += 1;
        }
    }
    let missing = (0..expected).filter(|n| !seen.contains_key(n)).collect();
    let duplicates = seen.values().map(|c| c - 1).sum();
    Tally {
        expected,
        missing,
        duplicates,
    }
}

/// Polls until `expected` distinct sequence numbers are stored, or the deadline.
pub fn wait_for_all(collector: &Collector, expected: u64, timeout: Duration) -> Result<Tally> {
    let deadline = Instant::now() + timeout;
    loop {
        let t = tally(&collector.all_log_messages()?, expected);
        if t.missing.is_empty() || Instant::now() > deadline {
            return Ok(t);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// What a [`ContinuousWriter`] writes to, shared with the test so that it can rotate
/// between two chunks (holding the lock pauses the writer).
pub struct WriterState {
    /// The file written now (`None`: closed, nothing is written until reopened).
    writer: Option<LineWriter>,
    /// The path written to.
    pub path: PathBuf,
    /// The sequence number of the next line; also the number of lines written.
    pub next_seq: u64,
    /// Bytes written so far, to all files.
    pub bytes: u64,
    corpus: std::sync::Arc<Vec<String>>,
}

impl WriterState {
    /// Opens `path` (created if missing) and writes there from now on.
    pub fn switch_to(&mut self, path: &Path) -> Result<()> {
        self.writer = Some(LineWriter::open(path)?);
        self.path = path.to_path_buf();
        Ok(())
    }

    /// Opens the current path again (after it was renamed away or deleted).
    pub fn reopen(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.switch_to(&path)
    }

    /// Closes the file: nothing is written until [`WriterState::reopen`].
    pub fn close(&mut self) {
        self.writer = None;
    }

    /// Writes the next `n` numbered lines (nothing while closed).
    pub fn write_chunk(&mut self, n: u64) -> Result<()> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let lines: Vec<String> = (self.next_seq..self.next_seq + n)
            .map(|s| numbered_line(&self.corpus, s))
            .collect();
        let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        w.write_lines(lines.into_iter())?;
        self.next_seq += n;
        self.bytes += bytes;
        Ok(())
    }
}

/// A thread appending numbered lines (from the loghub corpus) to a file, a chunk
/// every tick, until [`ContinuousWriter::finish`]: the load a rotation happens under.
pub struct ContinuousWriter {
    state: std::sync::Arc<std::sync::Mutex<WriterState>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl ContinuousWriter {
    /// Starts writing `lines_per_tick` lines to `path` every `tick`.
    pub fn start(
        path: &Path,
        corpus: std::sync::Arc<Vec<String>>,
        lines_per_tick: u64,
        tick: Duration,
    ) -> Result<ContinuousWriter> {
        let state = std::sync::Arc::new(std::sync::Mutex::new(WriterState {
            writer: Some(LineWriter::open(path)?),
            path: path.to_path_buf(),
            next_seq: 0,
            bytes: 0,
            corpus,
        }));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || -> Result<()> {
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    lock(&state).write_chunk(lines_per_tick)?;
                    std::thread::sleep(tick);
                }
                Ok(())
            })
        };
        Ok(ContinuousWriter {
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The writer's state; writing pauses while the guard is held.
    pub fn pause(&self) -> std::sync::MutexGuard<'_, WriterState> {
        lock(&self.state)
    }

    /// Stops the thread; the number of lines and of bytes written.
    pub fn finish(mut self) -> Result<(u64, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
        }
        let s = lock(&self.state);
        Ok((s.next_seq, s.bytes))
    }
}

impl Drop for ContinuousWriter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}
