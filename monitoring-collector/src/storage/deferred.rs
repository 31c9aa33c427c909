//! A database store opened in the background when its server is down at start.
//!
//! PostgreSQL and ClickHouse are other processes: after a reboot they may come up
//! after the collector, or be restarting. Exiting then would take ingest, the API
//! and the dashboard down with them. Instead the collector starts, and until the
//! store opens every call fails with the last error ([`StorageError::Unavailable`]):
//! batches are answered retry-later (the agents keep them), `/ready` says not
//! ready, queries answer 503. A thread retries the open with backoff (1 s doubling
//! to 30 s) and stops once it succeeds or the store is dropped. SQLite, a local
//! file, still fails the start: nothing would fix it by waiting.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use super::config::{StorageBackend, StorageConfig};
use super::{
    AgentRecord, CommitOutcome, FlowQuery, FlowRecord, IngestBatch, LogPage, LogQuery, MetricQuery,
    Series, StorageError, Store,
};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Opens the store `config` describes. A PostgreSQL or ClickHouse store that cannot
/// be opened yet gives a [`Deferred`] store that keeps trying; any other store fails
/// as [`super::open`] does.
pub fn open_or_defer(config: &StorageConfig) -> Result<Arc<dyn Store>, StorageError> {
    match super::open(config) {
        Ok(store) => Ok(store),
        Err(error)
            if matches!(
                config.backend,
                StorageBackend::Postgres | StorageBackend::Clickhouse
            ) =>
        {
            Ok(Arc::new(Deferred::start(
                config.clone(),
                &error,
                super::open,
            )?))
        }
        Err(error) => Err(error),
    }
}

/// A store whose opening is still being retried; see the module documentation.
pub struct Deferred {
    backend: &'static str,
    shared: Arc<Shared>,
    /// Dropping it wakes the retry thread and ends it.
    _stop: mpsc::Sender<()>,
}

struct Shared {
    store: OnceLock<Arc<dyn Store>>,
    last_error: Mutex<String>,
}

impl Deferred {
    /// Starts retrying `open(config)`; `first` is why the first attempt failed.
    pub fn start<F>(
        config: StorageConfig,
        first: &StorageError,
        open: F,
    ) -> Result<Deferred, StorageError>
    where
        F: Fn(&StorageConfig) -> Result<Arc<dyn Store>, StorageError> + Send + 'static,
    {
        let backend = config.backend.as_str();
        tracing::error!(
            message = "The store cannot be opened; the collector starts without it, answers retry-later and keeps trying.",
            backend,
            error = %first,
            retry_secs = FIRST_RETRY.as_secs(),
        );
        let shared = Arc::new(Shared {
            store: OnceLock::new(),
            last_error: Mutex::new(first.to_string()),
        });
        let (stop, stopped) = mpsc::channel();
        let retry = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("open-{backend}"))
            .spawn(move || retry_open(&config, &retry, &stopped, open))
            .map_err(|source| StorageError::Io {
                context: format!("starting a thread to open the {backend} store"),
                source,
            })?;
        Ok(Deferred {
            backend,
            shared,
            _stop: stop,
        })
    }

    fn store(&self) -> Result<&Arc<dyn Store>, StorageError> {
        self.shared
            .store
            .get()
            .ok_or_else(|| StorageError::Unavailable {
                backend: self.backend,
                last_error: self
                    .shared
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            })
    }
}

fn retry_open<F>(config: &StorageConfig, shared: &Shared, stopped: &mpsc::Receiver<()>, open: F)
where
    F: Fn(&StorageConfig) -> Result<Arc<dyn Store>, StorageError>,
{
    let backend = config.backend.as_str();
    let mut wait = FIRST_RETRY;
    for attempt in 2u32.. {
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        match open(config) {
            Ok(store) => {
                // Only this thread sets it, once.
                if shared.store.set(store).is_ok() {
                    tracing::info!(message = "The store is open.", backend, attempt);
                }
                return;
            }
            Err(error) => {
                wait = (wait * 2).min(MAX_RETRY);
                tracing::warn!(
                    message = "The store still cannot be opened.",
                    backend,
                    attempt,
                    %error,
                    retry_secs = wait.as_secs(),
                );
                *shared
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = error.to_string();
            }
        }
    }
}

impl Store for Deferred {
    fn commit(&self, batch: &IngestBatch) -> Result<CommitOutcome, StorageError> {
        self.store()?.commit(batch)
    }

    fn query_logs(&self, query: &LogQuery) -> Result<LogPage, StorageError> {
        self.store()?.query_logs(query)
    }

    fn query_metrics(&self, query: &MetricQuery) -> Result<Vec<Series>, StorageError> {
        self.store()?.query_metrics(query)
    }

    fn query_flows(&self, query: &FlowQuery) -> Result<Vec<FlowRecord>, StorageError> {
        self.store()?.query_flows(query)
    }

    fn metric_names(&self) -> Result<Vec<String>, StorageError> {
        self.store()?.metric_names()
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, StorageError> {
        self.store()?.agents()
    }

    fn health(&self) -> Result<(), StorageError> {
        self.store()?.health()
    }

    fn enforce_retention(&self, now_ns: i64) -> Result<usize, StorageError> {
        self.store()?.enforce_retention(now_ns)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::storage::none::NoStore;

    fn refused(n: usize) -> StorageError {
        StorageError::Io {
            context: format!("connecting, attempt {n}"),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        }
    }

    fn postgres() -> StorageConfig {
        StorageConfig {
            backend: StorageBackend::Postgres,
            ..StorageConfig::default()
        }
    }

    #[test]
    fn calls_fail_as_unavailable_until_the_store_opens() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&attempts);
        let store = Deferred::start(postgres(), &refused(1), move |_| {
            match counted.fetch_add(1, Ordering::SeqCst) {
                0 => Err(refused(2)),
                _ => Ok(Arc::new(NoStore::default()) as Arc<dyn Store>),
            }
        })
        .unwrap();
        let err = store.health().unwrap_err();
        assert!(
            matches!(
                &err,
                StorageError::Unavailable {
                    backend: "postgres",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("attempt 1"), "{err}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut saw_second_error = false;
        while store.health().is_err() {
            saw_second_error |= store
                .agents()
                .unwrap_err()
                .to_string()
                .contains("attempt 2");
            assert!(Instant::now() < deadline, "not open after 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(saw_second_error, "the last error was not kept");
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert!(store.agents().unwrap().is_empty());
    }

    #[test]
    fn dropping_the_store_ends_the_retries() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&attempts);
        let store = Deferred::start(postgres(), &refused(1), move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Err(refused(2))
        })
        .unwrap();
        drop(store);
        std::thread::sleep(FIRST_RETRY + Duration::from_millis(300));
        assert_eq!(attempts.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn sqlite_that_cannot_open_still_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let config = StorageConfig {
            path: file.join("data"),
            ..StorageConfig::default()
        };
        assert!(open_or_defer(&config).is_err());
    }
}
