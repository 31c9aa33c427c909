//! The file server: the set of open files, matched against the patterns at each scan,
//! and the decisions that keep rotation from losing or repeating lines.
//!
//! - A file found at a scan is first matched by inode to an open file (a rename keeps
//!   the inode); an open file the patterns no longer match was rotated away or
//!   deleted: it is read to its end and closed after a quiet period.
//! - A new file is known by its fingerprint: an open content with the same one means
//!   a copy (copy-truncate), not read; a closed one resumes where it was read to; an
//!   unknown one starts at zero (or at `read_from` in the first scan), and at zero
//!   too when its inode held other content before (inode reuse).
//! - A file shorter than its read position, or no longer starting with its prefix,
//!   was truncated: its old content is parked under its fingerprint with its progress
//!   (its copy, if the patterns match it, resumes from there) and the file is read
//!   again from zero with a fresh progress.

mod identify;
mod rotation;

use identify::ORPHAN_TTL;
use rotation::current_path;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::FileMetrics;
use super::checkpoints::{Checkpoints, Known, now_ms};
use super::config::LogsConfig;
use super::discovery::Discovery;
use super::fingerprint::Key;
use super::multiline::Rule;
use super::tail::{Deliver, LineRules, Poll, ReadContext, Stopped, Tail};
use crate::collectors::logs::filter::LineFilter;

/// Size of one read.
const CHUNK_BYTES: usize = 64 * 1024;
/// Most bytes read from one file before the others get their turn.
const BUDGET_BYTES: usize = 16 * CHUNK_BYTES;

/// What a read round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Round {
    /// Some file has more to read right away.
    pub more: bool,
    /// Some file had new data.
    pub read: bool,
}

/// The open files and the known contents.
pub(super) struct Server {
    config: LogsConfig,
    rules: LineRules,
    discovery: Discovery,
    checkpoints: Checkpoints,
    tails: HashMap<Key, Tail>,
    metrics: Arc<FileMetrics>,
    /// Whether the first scan (where `read_from` applies) is done.
    started: bool,
    /// Files of the first scan that waited for a slot: `read_from` still applies.
    startup_waiting: HashSet<(u64, u64)>,
    /// Files recognised as copies at the last scan, to count and log each once.
    duplicates: HashSet<(u64, u64)>,
    /// Paths that failed to open, to warn once per path.
    failed_paths: HashSet<PathBuf>,
    waiting: usize,
    /// Contents too short to have a fingerprint whose file was truncated, with when:
    /// a new file starting with all of one is its copy (copy-truncate of a short
    /// file) and resumes where it was read to.
    orphans: Vec<(Instant, Known)>,
    /// Set when a truncation or a new fingerprint needs a scan before the next read.
    pub rescan_requested: bool,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    batch: Vec<crate::pipeline::Envelope>,
    keys: Vec<Key>,
}

impl Server {
    /// A server with nothing open yet.
    pub fn new(
        config: LogsConfig,
        discovery: Discovery,
        checkpoints: Checkpoints,
        metrics: Arc<FileMetrics>,
    ) -> Server {
        let rules = line_rules(&config);
        Server {
            config,
            rules,
            discovery,
            checkpoints,
            tails: HashMap::new(),
            metrics,
            started: false,
            startup_waiting: HashSet::new(),
            duplicates: HashSet::new(),
            failed_paths: HashSet::new(),
            waiting: 0,
            orphans: Vec::new(),
            rescan_requested: false,
            buf: vec![0; CHUNK_BYTES],
            scratch: Vec::new(),
            batch: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Applies a new `[collectors.logs]` table (with the same `fingerprint_bytes`:
    /// every known content is keyed by it). Open files the new patterns still match
    /// keep their tail and position; the others are closed at once, keeping their
    /// content's record, whose progress the acknowledgements of their lines still in
    /// flight keep advancing: nothing is lost, and a file matched again later resumes
    /// where it stopped. Line rules apply to files opened from now on; an open file
    /// keeps the ones it was opened with, as its partial line was split by them. The
    /// filter is not a line rule: it applies to every open file from its next event
    /// on (its position does not move, nothing is read again).
    pub fn reconfigure(&mut self, config: LogsConfig, discovery: Discovery) {
        let matched: HashSet<(u64, u64)> = discovery
            .scan()
            .into_iter()
            .map(|c| (c.dev, c.ino))
            .collect();
        // A file already rotated away is read to its end as before.
        let unmatched: Vec<Key> = self
            .tails
            .iter()
            .filter(|(_, t)| t.rotated_since.is_none() && !matched.contains(&(t.dev, t.ino)))
            .map(|(k, _)| *k)
            .collect();
        for key in unmatched {
            if let Some(tail) = self.tails.remove(&key) {
                info!(
                    message = "File no longer matched by the patterns; closed.",
                    path = %tail.path.display(),
                    read_to = tail.emitted,
                );
                self.checkpoints.insert(key, tail.into_known(now_ms()));
            }
        }
        self.rules = line_rules(&config);
        for tail in self.tails.values_mut() {
            tail.filter = Arc::clone(&self.rules.filter);
        }
        self.config = config;
        self.discovery = discovery;
        self.failed_paths.clear();
        self.rescan_requested = true;
        self.update_gauges();
    }

    /// Matches the patterns again and reconciles the open files with what is there.
    pub fn scan(&mut self) {
        let initial = !self.started;
        self.rescan_requested = false;
        let candidates = self.discovery.scan();
        // Forget failures of paths that are gone (rotated names are unbounded).
        if !self.failed_paths.is_empty() {
            let present: HashSet<&PathBuf> = candidates.iter().map(|c| &c.path).collect();
            self.failed_paths.retain(|p| present.contains(p));
        }
        let by_inode: HashMap<(u64, u64), Key> = self
            .tails
            .iter()
            .map(|(k, t)| ((t.dev, t.ino), *k))
            .collect();
        let mut matched = HashSet::new();
        let mut fresh = Vec::new();
        for c in candidates {
            let Some(key) = by_inode.get(&(c.dev, c.ino)) else {
                fresh.push(c);
                continue;
            };
            matched.insert(*key);
            if let Some(tail) = self.tails.get_mut(key) {
                if tail.path != c.path {
                    debug!(message = "File renamed.", from = %tail.path.display(), to = %c.path.display());
                    tail.path = c.path;
                }
                if tail.rotated_since.take().is_some() {
                    debug!(message = "Rotated file matches the patterns again.", path = %tail.path.display());
                }
            }
        }
        for (key, tail) in &mut self.tails {
            if !matched.contains(key) && tail.rotated_since.is_none() {
                tail.rotated_since = Some(Instant::now());
                self.metrics.rotations.inc();
                if let Some(path) = current_path(&tail.file) {
                    tail.path = path;
                }
                debug!(message = "File rotated away or deleted; reading it to its end.", path = %tail.path.display());
            }
        }
        self.check_rewritten();

        // Files whose inode has a checkpoint first: one found truncated may leave an
        // orphan that another file of this scan (its copy) continues.
        fresh.sort_by_key(|c| !self.checkpoints.knows_inode(c.dev, c.ino));
        self.orphans
            .retain(|(since, _)| since.elapsed() < ORPHAN_TTL);
        self.waiting = 0;
        let mut duplicates = HashSet::new();
        for c in fresh {
            if self.tails.len() >= self.config.max_open_files {
                self.close_finished(true);
            }
            if self.tails.len() >= self.config.max_open_files {
                self.waiting += 1;
                if initial {
                    self.startup_waiting.insert((c.dev, c.ino));
                }
                continue;
            }
            self.open_candidate(c, initial, &mut duplicates);
        }
        if self.waiting > 0 {
            debug!(
                message = "Files wait for a slot under max_open_files.",
                waiting = self.waiting
            );
        }
        self.duplicates = duplicates;
        if initial {
            self.resume_rotated();
            self.started = true;
        }
        self.update_gauges();
    }

    /// One read pass over every open file.
    pub fn read_round(&mut self, out: &mut dyn Deliver) -> Result<Round, Stopped> {
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        keys.extend(self.tails.keys().copied());
        let mut more = false;
        let mut read = false;
        let mut stopped = None;
        for key in &keys {
            let Some(tail) = self.tails.get_mut(key) else {
                continue;
            };
            let mut cx = ReadContext {
                buf: &mut self.buf,
                scratch: &mut self.scratch,
                batch: &mut self.batch,
                metrics: &self.metrics,
                fingerprint_bytes: self.config.fingerprint_bytes,
                budget: BUDGET_BYTES,
            };
            match tail.poll(&mut cx, out) {
                Ok(Poll::Idle) => tail.failing = false,
                Ok(Poll::Read { more: m }) => {
                    read = true;
                    tail.failing = false;
                    more |= m;
                }
                Ok(Poll::Truncated) => {
                    self.handle_truncation(*key);
                    more = true;
                }
                Ok(Poll::Identified(prefix)) => {
                    self.adopt_fingerprint(*key, prefix);
                    more = true;
                }
                Ok(Poll::Stopped(s)) => {
                    stopped = Some(s);
                    break;
                }
                Err(error) => {
                    self.metrics.read_errors.inc();
                    if !tail.failing {
                        tail.failing = true;
                        warn!(message = "Failed to read file; retrying.", path = %tail.path.display(), %error);
                    }
                }
            }
        }
        self.keys = keys;
        if let Some(s) = stopped {
            return Err(s);
        }
        self.close_finished(false);
        self.update_gauges();
        Ok(Round { more, read })
    }

    /// Writes the checkpoints (acknowledged offsets) if they changed.
    pub fn checkpoint(&mut self) -> bool {
        let now = now_ms();
        self.checkpoints.prune(
            now,
            Duration::from_secs(self.config.checkpoint_retention_secs),
        );
        // Open files are seen now; an hour's precision is plenty for pruning and
        // keeps an idle agent from rewriting the file every interval.
        let seen = now - now % 3_600_000;
        let open = self.tails.values().map(|t| t.entry(seen)).collect();
        self.checkpoints.save(open, &self.metrics)
    }

    fn update_gauges(&self) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.files_open.set(gauge(self.tails.len()));
        let rotated = self
            .tails
            .values()
            .filter(|t| t.rotated_since.is_some())
            .count();
        self.metrics.files_rotated_open.set(gauge(rotated));
        self.metrics.files_waiting.set(gauge(self.waiting));
    }
}

/// How lines are split and merged under `config`.
fn line_rules(config: &LogsConfig) -> LineRules {
    // The patterns were validated with the configuration.
    let multiline = Rule::new(&config.multiline).unwrap_or_else(|error| {
        warn!(message = "Multiline pattern does not compile; lines are not merged.", %error);
        None
    });
    // Validated with the configuration too.
    let filter = LineFilter::new(&config.filter).unwrap_or_else(|(key, error)| {
        warn!(message = "Filter does not compile; every event ships.", key, %error);
        LineFilter::default()
    });
    LineRules {
        filter: Arc::new(filter),
        max_line_bytes: config.max_line_bytes,
        multiline,
        partial_timeout: (config.partial_line_timeout_ms > 0)
            .then(|| Duration::from_millis(config.partial_line_timeout_ms)),
    }
}
