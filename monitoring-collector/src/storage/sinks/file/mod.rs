//! The `file` sink: events as NDJSON ([`super::ndjson`]) appended to one file,
//! rotated by size and age.
//!
//! - **Rotation**: before a write that would take the file past `max_bytes`, or when
//!   the file is older than `max_age_secs`, it is renamed beside itself with a UTC
//!   timestamp suffix (`events.ndjson.20261130T120000.123456789Z`) and a new one is
//!   started; a file therefore exceeds `max_bytes` only by a single batch larger
//!   than that. Age is checked at writes: an idle file is rotated by the next write.
//!   With `gzip`, rotated files are compressed (`.gz`) by a thread of the sink, so
//!   writes never wait for it; at most `max_files` rotated files are kept.
//! - **Durability**: a required sink syncs each write to disk before returning (the
//!   batch is then acknowledged to the agent); a best-effort one leaves it to the
//!   kernel and syncs at rotation and shutdown.
//! - **A file that vanished** (deleted or renamed away by something else) is
//!   noticed at the next write and created again. Its directory is created at start
//!   but not again: a directory that vanished fails every write until it is back
//!   (counted, logged, and for a required sink retried by the agents).
//! - **A failed write** is cut back off the file, so that a retry does not leave a
//!   half line behind.

mod rotate;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use self::rotate::Rotated;
use super::config::SinkConfig;
use super::{Sink, SinkError, ndjson};
use crate::storage::IngestBatch;

/// `max_bytes` when not set: 100 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 100 << 20;
/// `max_age_secs` when not set: an hour.
pub const DEFAULT_MAX_AGE_SECS: u64 = 3600;
/// `max_files` when not set.
pub const DEFAULT_MAX_FILES: usize = 10;

/// What a file sink needs from its `[[storage.sinks]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSettings {
    /// The file written.
    pub path: PathBuf,
    /// Rotate before the file would pass this size.
    pub max_bytes: u64,
    /// Rotate a file this old.
    pub max_age: Duration,
    /// Rotated files kept; 0 keeps all.
    pub max_files: usize,
    /// Compress rotated files.
    pub gzip: bool,
    /// Sync every write (a required sink).
    pub durable: bool,
}

impl FileSettings {
    /// The settings of a `file` table, with the documented defaults.
    pub fn from_config(config: &SinkConfig) -> FileSettings {
        FileSettings {
            path: config.path.clone().unwrap_or_default(),
            max_bytes: config.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
            max_age: Duration::from_secs(config.max_age_secs.unwrap_or(DEFAULT_MAX_AGE_SECS)),
            max_files: config.max_files.unwrap_or(DEFAULT_MAX_FILES),
            gzip: config.gzip.unwrap_or(false),
            durable: config.required,
        }
    }
}

/// Appends NDJSON to a rotated file.
pub struct FileSink {
    settings: FileSettings,
    state: Mutex<State>,
    rotated: Rotated,
}

#[derive(Default)]
struct State {
    /// `None` before the first write and after a failure: opened (again) by the
    /// next write.
    file: Option<Current>,
    /// Why the last write failed, until one succeeds (for `health`).
    last_error: Option<String>,
    /// The encoding buffer, kept between writes.
    buf: Vec<u8>,
}

/// The file being written.
struct Current {
    file: File,
    /// Identity of the file opened, to notice the path now names another (or none).
    dev: u64,
    ino: u64,
    len: u64,
    /// When the file was started, for `max_age`.
    started: SystemTime,
}

impl FileSink {
    /// Opens the sink a `file` table describes.
    pub fn open(config: &SinkConfig) -> Result<FileSink, SinkError> {
        FileSink::with_settings(FileSettings::from_config(config))
    }

    /// Creates the file's directory if missing, opens the file (appending to what
    /// is there), and compresses and prunes rotated files a previous run left.
    pub fn with_settings(settings: FileSettings) -> Result<FileSink, SinkError> {
        let dir = parent(&settings.path);
        std::fs::create_dir_all(dir)
            .map_err(|e| SinkError::io(format!("creating {}", dir.display()), e))?;
        let rotated = Rotated::start(&settings)?;
        let current = open(&settings.path)?;
        Ok(FileSink {
            settings,
            state: Mutex::new(State {
                file: Some(current),
                ..State::default()
            }),
            rotated,
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.settings.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `state.buf`, rotating first when due.
    fn append(&self, state: &mut State) -> Result<(), SinkError> {
        let path = &self.settings.path;
        let mut current = match state.file.take() {
            Some(current) if still_at(&current, path) => current,
            _ => open(path)?,
        };
        let bytes = state.buf.len() as u64;
        let age = SystemTime::now()
            .duration_since(current.started)
            .unwrap_or_default();
        if current.len > 0
            && (current.len.saturating_add(bytes) > self.settings.max_bytes
                || age >= self.settings.max_age)
        {
            current = self.rotate(current)?;
        }
        let before = current.len;
        let written = current.file.write_all(&state.buf).and_then(|()| {
            if self.settings.durable {
                current.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                current.len += bytes;
                state.file = Some(current);
                Ok(())
            }
            Err(e) => {
                // Cut the partial write off so a retry does not leave half a line;
                // the file is opened again by the next write.
                if let Err(error) = current.file.set_len(before) {
                    tracing::warn!(message = "Failed to cut a partial write off a sink file.", %error, path = %path.display());
                }
                Err(SinkError::io(format!("writing {}", path.display()), e))
            }
        }
    }

    /// Renames the current file away and starts a new one.
    fn rotate(&self, current: Current) -> Result<Current, SinkError> {
        let path = &self.settings.path;
        // Synced before the rename so that a crash never leaves a rotated file
        // shorter than what was written to it.
        current
            .file
            .sync_all()
            .map_err(|e| SinkError::io(format!("syncing {}", path.display()), e))?;
        let target = self.rotated.next_name(path);
        std::fs::rename(path, &target).map_err(|e| {
            SinkError::io(
                format!("renaming {} to {}", path.display(), target.display()),
                e,
            )
        })?;
        drop(current);
        tracing::debug!(message = "Rotated sink file.", path = %path.display(), rotated = %target.display());
        let next = open(path)?;
        self.rotated.rotated(target);
        Ok(next)
    }
}

impl Sink for FileSink {
    fn write(&self, batches: &[Arc<IngestBatch>]) -> Result<(), SinkError> {
        let mut state = self.lock();
        let state = &mut *state;
        state.buf.clear();
        ndjson::encode_batches(&mut state.buf, batches);
        let result = self.append(state);
        // A large batch must not pin its buffer for the life of the sink.
        if state.buf.capacity() > 4 << 20 {
            state.buf = Vec::new();
        }
        state.last_error = result.as_ref().err().map(ToString::to_string);
        result
    }

    fn health(&self) -> Result<(), SinkError> {
        let dir = parent(&self.settings.path);
        std::fs::metadata(dir)
            .map_err(|e| SinkError::io(format!("checking {}", dir.display()), e))?;
        match &self.lock().last_error {
            Some(error) => Err(SinkError::Unhealthy(error.clone())),
            None => Ok(()),
        }
    }

    fn flush(&self) -> Result<(), SinkError> {
        if let Some(current) = &self.lock().file {
            current.file.sync_all().map_err(|e| {
                SinkError::io(format!("syncing {}", self.settings.path.display()), e)
            })?;
        }
        self.rotated.finish(Duration::from_secs(60));
        Ok(())
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Opens (creating) `path` for appending.
fn open(path: &Path) -> Result<Current, SinkError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| SinkError::io(format!("opening {}", path.display()), e))?;
    let meta = file
        .metadata()
        .map_err(|e| SinkError::io(format!("reading the metadata of {}", path.display()), e))?;
    let now = SystemTime::now();
    // A file left by a previous run keeps its age (birth time where the file system
    // records one), so that a restart does not postpone its rotation.
    let started = match meta.len() {
        0 => now,
        _ => meta.created().unwrap_or(now),
    };
    Ok(Current {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        started,
    })
}

/// Whether `path` still names the file `current` has open.
fn still_at(current: &Current, path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.dev() == current.dev && m.ino() == current.ino)
}
