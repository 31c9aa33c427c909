//! The journal itself, through libsystemd: opening it, placing the read pointer where
//! the last run stopped, filtering and reading entries. A [`Reader`] is not `Send`
//! (libsystemd's `sd_journal` belongs to the thread that opened it), so it is made
//! and used on the source's own thread.
//!
//! Resuming (LESSONS #14, Vector #1106): the checkpointed cursor names an entry that
//! was delivered. It is first looked up without any filter: `sd_journal_seek_cursor`
//! then `sd_journal_next` lands on the nearest entry when it is gone, so
//! `sd_journal_test_cursor` tells whether it still exists. If it does not (vacuumed,
//! another machine's journal) reading restarts at the oldest entry, with a warning
//! and a count. If it does, the filters are added and the pointer placed on it again:
//! the first `next` lands on it when it matches (it is skipped: already delivered),
//! or on the first matching entry after it (which is new, and read).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use systemd::journal::{Journal, JournalWaitResult, OpenDirectoryOptions, OpenFilesOptions};
use tracing::{info, warn};

use super::checkpoint::Loaded;
use super::config::{JournalMatch, unit_name};
use super::convert::RawEntry;
use super::{JournaldError, JournaldMetrics, Settings};
use crate::collectors::logs::ReadFrom;

/// An open journal with its filters, positioned to read the next undelivered entry.
pub struct Reader {
    journal: Journal,
    /// The pointer already sits on an entry that has not been read (see the module
    /// documentation): the next read returns it instead of moving on.
    on_unread_entry: bool,
}

/// Where reading starts.
enum Start {
    /// The oldest entry.
    Head,
    /// Just after the entry with this cursor.
    After(String),
}

impl Reader {
    /// Opens the journal `settings` names and places the pointer after the last
    /// delivered entry (per `loaded`) or per `read_from` the first time. Returns the
    /// reader and the checkpoint to write now, if it differs from `loaded`.
    pub fn start(
        settings: &Settings,
        loaded: Loaded,
        metrics: &JournaldMetrics,
    ) -> Result<(Reader, Option<Option<String>>), JournaldError> {
        let mut journal = open(settings.path.as_deref())?;
        let journal_error = |what: &'static str| {
            move |e: systemd::Error| JournaldError::Journal {
                what,
                error: e.to_string(),
            }
        };
        let (start, save) = match loaded {
            Loaded::Cursor(Some(cursor)) => {
                if cursor_exists(&mut journal, &cursor) {
                    info!(message = "Journal source resumes after its checkpoint.", %cursor);
                    (Start::After(cursor), None)
                } else {
                    metrics.cursor_resets.inc();
                    warn!(
                        message = "Checkpointed journal cursor not found (journal vacuumed, or another machine's); reading restarts at the oldest entry.",
                        %cursor,
                    );
                    (Start::Head, Some(None))
                }
            }
            Loaded::Cursor(None) => (Start::Head, None),
            Loaded::Corrupt => {
                metrics.cursor_resets.inc();
                (Start::Head, Some(None))
            }
            Loaded::Missing => match settings.read_from {
                ReadFrom::Beginning => (Start::Head, Some(None)),
                ReadFrom::End => {
                    journal
                        .seek_tail()
                        .map_err(journal_error("seek to the end"))?;
                    // After seek_tail the pointer is past the last entry; `previous`
                    // lands on it (if any) so that its cursor can be taken.
                    if journal.previous().map_err(journal_error("read"))? > 0 {
                        let cursor = journal.cursor().map_err(journal_error("get a cursor"))?;
                        (Start::After(cursor.clone()), Some(Some(cursor)))
                    } else {
                        (Start::Head, Some(None))
                    }
                }
            },
        };
        add_filters(&mut journal, settings).map_err(journal_error("add a match"))?;
        let mut reader = Reader {
            journal,
            on_unread_entry: false,
        };
        match start {
            Start::Head => reader
                .journal
                .seek_head()
                .map_err(journal_error("seek to the beginning"))?,
            Start::After(cursor) => {
                reader
                    .journal
                    .seek_cursor(&cursor)
                    .map_err(journal_error("seek to the checkpoint"))?;
                if reader.journal.next().map_err(journal_error("read"))? > 0 {
                    let delivered = reader
                        .journal
                        .test_cursor(&cursor)
                        .map_err(journal_error("test the cursor"))?;
                    reader.on_unread_entry = !delivered;
                }
            }
        }
        Ok((reader, save))
    }

    /// The next entry and its cursor, or `None` at the end of the journal.
    pub fn next_entry(&mut self) -> Result<Option<(RawEntry, String)>, systemd::Error> {
        if self.on_unread_entry {
            self.on_unread_entry = false;
        } else if self.journal.next()? == 0 {
            return Ok(None);
        }
        let mut entry = RawEntry {
            realtime_usec: self.journal.timestamp_usec()?,
            ..RawEntry::default()
        };
        self.journal.restart_data();
        while let Some(field) = self.journal.enumerate_data()? {
            if let Some(value) = field.value() {
                entry.add(field.name(), value);
            }
        }
        let cursor = self.journal.cursor()?;
        Ok(Some((entry, cursor)))
    }

    /// Waits up to `timeout` for the journal to change (`sd_journal_wait`: inotify on
    /// its files and directories, never a busy loop). Returns whether it changed.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, systemd::Error> {
        Ok(!matches!(
            self.journal.wait(Some(timeout))?,
            JournalWaitResult::Nop
        ))
    }
}

/// The system journal, a directory of journal files, or one journal file.
fn open(path: Option<&Path>) -> Result<Journal, JournaldError> {
    let opened = match path {
        None => systemd::journal::OpenOptions::default()
            .local_only(true)
            .open(),
        Some(path) => {
            let c_path = path.as_os_str().as_bytes().to_vec();
            if path.is_dir() {
                OpenDirectoryOptions::default().open_directory(c_path)
            } else if path.is_file() {
                OpenFilesOptions::default().open_files([c_path])
            } else {
                return Err(JournaldError::Open {
                    path: path.display().to_string(),
                    error: "no such journal directory or file".to_string(),
                });
            }
        }
    };
    opened.map_err(|e| JournaldError::Open {
        path: path.map_or_else(
            || "the system journal".to_string(),
            |p| p.display().to_string(),
        ),
        error: e.to_string(),
    })
}

/// Whether the entry `cursor` names is in the journal (looked up with no filter).
fn cursor_exists(journal: &mut Journal, cursor: &str) -> bool {
    journal.seek_cursor(cursor).is_ok()
        && matches!(journal.next(), Ok(n) if n > 0)
        && journal.test_cursor(cursor).unwrap_or(false)
}

/// Adds the matches, then the units, then the priorities, each group ANDed with the
/// others (`sd_journal_add_conjunction`), so that a `matches` entry on
/// `_SYSTEMD_UNIT` narrows `journald_units` instead of widening it.
fn add_filters(journal: &mut Journal, settings: &Settings) -> Result<(), systemd::Error> {
    let groups: [Vec<JournalMatch>; 3] = [
        settings.matches.clone(),
        settings
            .units
            .iter()
            .map(|u| JournalMatch {
                field: "_SYSTEMD_UNIT".into(),
                value: unit_name(u),
            })
            .collect(),
        settings
            .max_priority
            .map(|max| {
                (0..=max.code())
                    .map(|p| JournalMatch {
                        field: "PRIORITY".into(),
                        value: p.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    ];
    for group in groups.iter().filter(|g| !g.is_empty()) {
        for m in group {
            journal.match_add(&m.field, m.value.as_bytes())?;
        }
        journal.match_and()?;
    }
    Ok(())
}
