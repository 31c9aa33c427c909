//! The spool's reader: turns records back into batches, in order, for the transport.
//!
//! Each batch keeps the stream id and sequence of its frame (a resend after a restart
//! is recognised by the collector) and its per-source event counts (from the record,
//! or by decoding an old record's payload, see [`format`](mod@super::format)), and
//! carries one mark: the spool's own progress, at the global position just past its
//! record. Corrupt records are skipped by scanning for the next valid one, counted and
//! logged; a segment deleted under the reader (by `drop_oldest`) is stepped over.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use monitoring_common::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::Bytes;
use tracing::{error, warn};

use super::format::{self, Read};
use super::{Shared, lock};
use crate::pipeline::Batch;

/// What [`Reader::next`] found.
#[derive(Debug)]
pub enum Next {
    /// The next batch.
    Batch(Batch),
    /// Nothing new within the wait (or a read failed and will be retried).
    Idle,
    /// The writer is done and everything has been read.
    Closed,
}

/// Reads records from a position on.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    /// Global position of the next record to read.
    pos: u64,
    /// The segment file open now, by base.
    file: Option<(u64, File)>,
}

impl Reader {
    pub(super) fn new(shared: Arc<Shared>, pos: u64) -> Reader {
        Reader {
            shared,
            pos,
            file: None,
        }
    }

    /// The position of the next record to read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next batch, waiting up to `wait` for one to be written.
    pub fn next(&mut self, wait: Duration) -> Next {
        let mut waited = false;
        loop {
            let (base, offset, limit) = {
                let st = lock(&self.shared.state);
                match st.locate(self.pos) {
                    Some(found) => found,
                    None if st.closed => return Next::Closed,
                    None if waited || wait.is_zero() => return Next::Idle,
                    None => {
                        let (_st, _) = self
                            .shared
                            .data
                            .wait_timeout(st, wait)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        waited = true;
                        continue;
                    }
                }
            };
            self.pos = base + offset;
            if let Err(error) = self.open(base) {
                self.missing_segment(base, &error);
                continue;
            }
            let Some((_, file)) = &self.file else {
                continue;
            };
            match format::read_record(file, offset, limit) {
                Ok(Read::Record {
                    body,
                    next,
                    version,
                }) => {
                    let at = self.pos;
                    self.pos = base + next;
                    match self.batch(version, body) {
                        Some(batch) => return Next::Batch(batch),
                        None => self.corrupt(base, at, "a record that is not a batch frame"),
                    }
                }
                Ok(Read::Bad) => {
                    let resume = match format::resync(file, offset + 1, limit) {
                        Ok(r) => r,
                        Err(error) => return self.read_failed(base, &error),
                    };
                    let at = self.pos;
                    self.pos = base + resume.unwrap_or(limit);
                    self.corrupt(base, at, "bad magic, length or checksum");
                }
                Ok(Read::End) => self.pos = base + limit,
                Err(error) => return self.read_failed(base, &error),
            }
        }
    }

    fn open(&mut self, base: u64) -> std::io::Result<()> {
        if self.file.as_ref().is_none_or(|(b, _)| *b != base) {
            let path = self.shared.dir.join(format::segment_file_name(base));
            self.file = Some((base, File::open(path)?));
        }
        Ok(())
    }

    /// A segment listed but not openable: deleted by `drop_oldest` since it was
    /// located (nothing to do), or removed by hand (dropped from the accounting).
    fn missing_segment(&mut self, base: u64, error: &std::io::Error) {
        let mut st = lock(&self.shared.state);
        if st.segments.contains_key(&base) && base != st.active {
            st.segments.remove(&base);
            self.shared.update_gauges(&st);
            drop(st);
            self.shared.metrics.io_errors.inc();
            warn!(
                message = "A spool segment cannot be opened; skipping it.",
                segment = %format::segment_file_name(base),
                %error,
            );
        } else if st.segments.contains_key(&base) {
            drop(st);
            self.shared.metrics.io_errors.inc();
            warn!(message = "The active spool segment cannot be opened.", %error);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn read_failed(&mut self, base: u64, error: &std::io::Error) -> Next {
        self.shared.metrics.io_errors.inc();
        warn!(
            message = "Failed to read the spool; retrying.",
            segment = %format::segment_file_name(base),
            %error,
        );
        // Reopen next time, in case the handle is the problem.
        self.file = None;
        Next::Idle
    }

    /// Counts and logs the corrupt region from `at` to the current position.
    fn corrupt(&self, base: u64, at: u64, what: &str) {
        self.shared.note_skipped(at, self.pos);
        // Its lines were spooled, so their checkpoints may have moved past them: lost.
        error!(
            message = "Skipping a corrupt spool record; the events in it are lost.",
            segment = %format::segment_file_name(base),
            offset = at - base,
            what,
        );
    }

    /// The batch a record holds; `None` if its body is not a frame.
    fn batch(&self, version: format::Version, body: Vec<u8>) -> Option<Batch> {
        let (sources, at) = format::body_sources(version, &body)?;
        let frame = body.get(at..)?;
        let (stream_id, sequence) = FrameHeader::peek_id(frame)?;
        let event_count = format::frame_event_count(frame)?;
        let uncompressed_bytes = format::frame_uncompressed_len(frame)? as usize;
        self.shared.note_sent(self.pos);
        Some(Batch {
            stream_id,
            sequence,
            event_count,
            uncompressed_bytes,
            // No copy: the frame is a view of the body.
            frame: Bytes::from(body).slice(at..),
            marks: vec![(self.shared.progress.clone(), self.pos)],
            sources,
        })
    }
}
