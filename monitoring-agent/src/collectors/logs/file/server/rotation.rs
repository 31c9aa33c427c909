//! Reacting to what happens to open files: truncated or rewritten in place, grown
//! into a fingerprint, rotated away and read to their end.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info};

use super::Server;
use crate::collectors::logs::file::checkpoints::{Known, now_ms};
use crate::collectors::logs::file::fingerprint::{Key, Prefix, read_prefix, starts_with};

impl Server {
    /// Truncations that the size alone does not show: content rewritten past the
    /// read position.
    pub(super) fn check_rewritten(&mut self) {
        let mut rewritten = Vec::new();
        for (key, tail) in &self.tails {
            let Ok(meta) = tail.file.metadata() else {
                continue;
            };
            let size = meta.len();
            let same = size >= tail.splitter.position()
                && starts_with(&tail.file, &tail.prefix, size, &mut self.scratch).unwrap_or(true);
            if !same {
                rewritten.push(*key);
            }
        }
        for key in rewritten {
            self.handle_truncation(key);
        }
    }

    /// The file under `key` is shorter than its read position or no longer starts
    /// with its prefix: park its old content, read it again from zero.
    pub(super) fn handle_truncation(&mut self, key: Key) {
        let Some(mut tail) = self.tails.remove(&key) else {
            return;
        };
        // Counted from the end of the last line handed over, not from the read
        // position: the start of a line read but not yet ended (a read chunk stops
        // mid-line) is dropped with the old content too.
        let unread = tail.size.saturating_sub(tail.emitted);
        self.metrics.truncations.inc();
        self.metrics.truncated_unread_bytes.inc_by(unread);
        info!(
            message = "File was truncated; reading it again from the start.",
            path = %tail.path.display(),
            unread_bytes = unread,
        );
        let fb = self.config.fingerprint_bytes;
        let size = tail.file.metadata().map_or(0, |m| m.len());
        let prefix = read_prefix(&tail.file, fb, size, &mut self.scratch).unwrap_or(Prefix {
            len: 0,
            hash: xxhash_rust::xxh3::xxh3_64(b""),
        });
        // Lines of the old content may still be in flight; they advance this
        // progress, which a copy of the content continues.
        let old = Known {
            dev: tail.dev,
            ino: tail.ino,
            prefix: tail.prefix,
            path: tail.path.clone(),
            progress: Arc::clone(&tail.progress),
            position: tail.emitted,
            last_seen_ms: now_ms(),
        };
        match key {
            Key::Fingerprint(_) => self.checkpoints.insert(key, old),
            Key::Inode { .. } => self.add_orphan(old),
        }
        self.rescan_requested = true;
        let new_key = prefix.key(fb, tail.dev, tail.ino);
        if self.tails.contains_key(&new_key) {
            // It now holds a copy of another open file's content.
            return;
        }
        self.checkpoints.remove(&new_key);
        tail.restart(new_key, prefix);
        tail.size = size;
        self.tails.insert(new_key, tail);
    }

    /// A short file reached `fingerprint_bytes`: key it by its fingerprint, unless
    /// that fingerprint is known, in which case it is a copy and the next scan
    /// decides as for any file found with it.
    pub(super) fn adopt_fingerprint(&mut self, key: Key, prefix: Prefix) {
        let new_key = Key::Fingerprint(prefix.hash);
        let Some(mut tail) = self.tails.remove(&key) else {
            return;
        };
        let copy = self.tails.contains_key(&new_key)
            || self
                .checkpoints
                .get(&new_key)
                .is_some_and(|k| tail.size >= k.position && tail.emitted <= k.position);
        if copy {
            self.rescan_requested = true;
            return;
        }
        self.checkpoints.remove(&new_key);
        tail.key = new_key;
        tail.prefix = prefix;
        self.tails.insert(new_key, tail);
    }

    /// Closes rotated or deleted files read to their end that have been quiet long
    /// enough (or at once when `need_slot`), keeping their content's record.
    pub(super) fn close_finished(&mut self, need_slot: bool) {
        let idle = Duration::from_millis(self.config.rotated_idle_close_ms);
        let max = Duration::from_secs(self.config.rotated_max_open_secs);
        let done: Vec<Key> = self
            .tails
            .iter()
            .filter(|(_, t)| {
                // An event still being merged waits for its timeout, unless the slot
                // is needed now (its lines are then read again if the file returns).
                t.rotated_since.is_some_and(|since| {
                    t.at_end()
                        && (need_slot
                            || !t.merging()
                                && (t.last_data.elapsed() >= idle || since.elapsed() >= max))
                })
            })
            .map(|(k, _)| *k)
            .collect();
        for key in done {
            if let Some(tail) = self.tails.remove(&key) {
                debug!(message = "Closed rotated file read to its end.", path = %tail.path.display());
                self.checkpoints.insert(key, tail.into_known(now_ms()));
            }
        }
    }
}

/// Where an open file is now, from `/proc` (Linux); `None` when deleted or unknown.
pub(super) fn current_path(file: &File) -> Option<PathBuf> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    if link.to_string_lossy().ends_with(" (deleted)") {
        None
    } else {
        Some(link)
    }
}
