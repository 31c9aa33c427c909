//! The `blackhole` sink: accepts everything and keeps nothing, counting what it got.
//! For benchmarks (the cost of the fan-out without a sink's own) and tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Sink, SinkError};
use crate::storage::IngestBatch;

/// Discards events; counts them.
#[derive(Debug, Default)]
pub struct BlackholeSink {
    events: AtomicU64,
    writes: AtomicU64,
}

impl BlackholeSink {
    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Write calls so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

impl Sink for BlackholeSink {
    fn write(&self, batches: &[Arc<IngestBatch>]) -> Result<(), SinkError> {
        let events: usize = batches.iter().map(|b| b.events.len()).sum();
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn health(&self) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
