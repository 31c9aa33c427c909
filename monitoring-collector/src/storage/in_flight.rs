//! The batches a store is committing right now, so that two workers never commit the
//! same batch at once (a resend racing the original): the second waits for the first
//! and its duplicate check then sees the result. Stores without transactions across
//! their tables (sqlite's day files, clickhouse) need it; across processes the
//! store's own dedup records decide.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::IngestBatch;

/// Identity of a batch.
type BatchKey = (Arc<str>, u64, u64);

/// The batches being committed right now by this process.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    keys: Mutex<HashSet<BatchKey>>,
    done: Condvar,
}

/// Holds a batch's key in the in-flight set; removes it when dropped.
pub(crate) struct InFlightGuard<'a> {
    owner: &'a InFlight,
    key: BatchKey,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InFlight {
    /// Claims `batch`, first waiting for another commit of the same batch to end.
    pub(crate) fn enter(&self, batch: &IngestBatch) -> InFlightGuard<'_> {
        let key: BatchKey = (Arc::clone(&batch.agent_id), batch.stream_id, batch.sequence);
        let mut keys = lock(&self.keys);
        while keys.contains(&key) {
            keys = self.done.wait(keys).unwrap_or_else(PoisonError::into_inner);
        }
        keys.insert(key.clone());
        InFlightGuard { owner: self, key }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        lock(&self.owner.keys).remove(&self.key);
        self.owner.done.notify_all();
    }
}
