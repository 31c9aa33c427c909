//! The `blackhole` sink: accepts everything and keeps nothing, counting what it got.
//! For benchmarks (the cost of the fan-out without a sink's own) and tests.
//!
//! So that a benchmark can prove it lost and repeated nothing without storing
//! anything, the sink also sums, wrapping, the xxh3-64 hash of every log message it
//! is given: the sum is independent of order, and a lost or repeated line changes it.
//! Its totals are logged when it is flushed at shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use monitoring_common::event::EventKind;
use xxhash_rust::xxh3::xxh3_64;

use super::{Sink, SinkError};
use crate::storage::IngestBatch;

/// Discards events; counts them.
#[derive(Debug, Default)]
pub struct BlackholeSink {
    events: AtomicU64,
    writes: AtomicU64,
    log_checksum: AtomicU64,
}

impl BlackholeSink {
    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// The wrapping sum of the xxh3-64 hashes of the log messages written so far.
    pub fn log_checksum(&self) -> u64 {
        self.log_checksum.load(Ordering::Relaxed)
    }

    /// Write calls so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

impl Sink for BlackholeSink {
    fn write(&self, batches: &[Arc<IngestBatch>]) -> Result<(), SinkError> {
        let events: usize = batches.iter().map(|b| b.events.len()).sum();
        let checksum = batches
            .iter()
            .flat_map(|b| &b.events)
            .filter_map(|e| match &e.kind {
                EventKind::Log(log) => Some(xxh3_64(log.message.as_bytes())),
                _ => None,
            })
            .fold(0u64, u64::wrapping_add);
        self.log_checksum.fetch_add(checksum, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn health(&self) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        tracing::info!(
            message = "Blackhole sink totals.",
            events = self.events(),
            log_checksum = format!("{:016x}", self.log_checksum()),
        );
        Ok(())
    }
}
