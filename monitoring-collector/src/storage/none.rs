//! `backend = "none"`: no primary store. Batches go only to `[[storage.sinks]]` (at
//! least one of them required, so that an acknowledgement still means a sink has the
//! batch), as for a collector that only forwards, or a benchmark of the pipeline
//! without a database.
//!
//! Without a database there is nowhere to remember batches across restarts, so
//! resends are recognised only while the collector runs: the keys of the most recent
//! [`REMEMBERED_BATCHES`] batches are kept in memory. A resend happens within the
//! agent's window of unacknowledged batches, far fewer than that. The API's queries
//! answer empty.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use super::{
    AgentRecord, CommitOutcome, FlowQuery, FlowRecord, IngestBatch, LogPage, LogQuery, MetricQuery,
    Series, StorageError, Store,
};

/// How many batch keys are remembered to recognise resends (about 6 MiB).
pub const REMEMBERED_BATCHES: usize = 100_000;

type BatchKey = (Arc<str>, u64, u64);

/// The keys of recent batches, oldest first in `order`.
#[derive(Debug, Default)]
struct Recent {
    keys: HashSet<BatchKey>,
    order: VecDeque<BatchKey>,
}

/// A store that keeps nothing but the keys of recent batches.
#[derive(Debug, Default)]
pub struct NoStore {
    recent: Mutex<Recent>,
}

impl Store for NoStore {
    fn commit(&self, batch: &IngestBatch) -> Result<CommitOutcome, StorageError> {
        let key = (batch.agent_id.clone(), batch.stream_id, batch.sequence);
        // One lock per batch, not per event; nothing else holds it.
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if !recent.keys.insert(key.clone()) {
            return Ok(CommitOutcome::Duplicate);
        }
        recent.order.push_back(key);
        if recent.order.len() > REMEMBERED_BATCHES
            && let Some(oldest) = recent.order.pop_front()
        {
            recent.keys.remove(&oldest);
        }
        Ok(CommitOutcome::Committed)
    }

    fn query_logs(&self, _query: &LogQuery) -> Result<LogPage, StorageError> {
        Ok(LogPage {
            logs: Vec::new(),
            next_cursor: None,
        })
    }

    fn query_metrics(&self, _query: &MetricQuery) -> Result<Vec<Series>, StorageError> {
        Ok(Vec::new())
    }

    fn query_flows(&self, _query: &FlowQuery) -> Result<Vec<FlowRecord>, StorageError> {
        Ok(Vec::new())
    }

    fn metric_names(&self) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, StorageError> {
        Ok(Vec::new())
    }

    fn health(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn enforce_retention(&self, _now_ns: i64) -> Result<usize, StorageError> {
        Ok(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn batch(agent: &str, sequence: u64) -> IngestBatch {
        IngestBatch {
            agent_id: Arc::from(agent),
            stream_id: 7,
            sequence,
            received_ns: 0,
            events: Vec::new(),
        }
    }

    #[test]
    fn a_resend_is_a_duplicate_and_keys_are_per_agent() {
        let store = NoStore::default();
        assert_eq!(
            store.commit(&batch("a", 1)).unwrap(),
            CommitOutcome::Committed
        );
        assert_eq!(
            store.commit(&batch("a", 1)).unwrap(),
            CommitOutcome::Duplicate
        );
        assert_eq!(
            store.commit(&batch("b", 1)).unwrap(),
            CommitOutcome::Committed
        );
        assert_eq!(
            store.commit(&batch("a", 2)).unwrap(),
            CommitOutcome::Committed
        );
        assert!(
            store
                .query_logs(&LogQuery::default())
                .unwrap()
                .logs
                .is_empty()
        );
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_keys_are_forgotten() {
        let store = NoStore::default();
        let n = REMEMBERED_BATCHES as u64 + 10;
        for sequence in 0..n {
            store.commit(&batch("a", sequence)).unwrap();
        }
        assert_eq!(store.recent.lock().unwrap().keys.len(), REMEMBERED_BATCHES);
        // The newest are still recognised; the first ten were forgotten.
        assert_eq!(
            store.commit(&batch("a", n - 1)).unwrap(),
            CommitOutcome::Duplicate
        );
        assert_eq!(
            store.commit(&batch("a", 0)).unwrap(),
            CommitOutcome::Committed
        );
    }
}
