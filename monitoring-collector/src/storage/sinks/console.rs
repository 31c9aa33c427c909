//! The `console` sink: events as NDJSON ([`super::ndjson`]) on standard output, for
//! a container's log driver or a pipe.
//!
//! A batch is encoded first and written under one lock of stdout, so that lines of
//! batches written by several workers never interleave. The collector's own log goes
//! to stderr and never mixes with it.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Sink, SinkError, ndjson};
use crate::storage::IngestBatch;

/// Writes NDJSON to stdout (or, in tests, to any writer through the same code).
pub struct ConsoleSink {
    out: Output,
}

enum Output {
    Stdout,
    Writer(Mutex<Box<dyn Write + Send>>),
}

impl ConsoleSink {
    /// A sink writing to the process's standard output.
    pub fn stdout() -> ConsoleSink {
        ConsoleSink {
            out: Output::Stdout,
        }
    }

    /// A sink writing to `writer` instead of stdout.
    pub fn with_writer(writer: Box<dyn Write + Send>) -> ConsoleSink {
        ConsoleSink {
            out: Output::Writer(Mutex::new(writer)),
        }
    }
}

fn write_locked(out: &mut dyn Write, buf: &[u8]) -> Result<(), SinkError> {
    out.write_all(buf)
        .and_then(|()| out.flush())
        .map_err(|e| SinkError::io("writing events to standard output", e))
}

impl Sink for ConsoleSink {
    fn write(&self, batches: &[Arc<IngestBatch>]) -> Result<(), SinkError> {
        let mut buf =
            Vec::with_capacity(256 * batches.iter().map(|b| b.events.len()).sum::<usize>());
        ndjson::encode_batches(&mut buf, batches);
        match &self.out {
            Output::Stdout => write_locked(&mut std::io::stdout().lock(), &buf),
            Output::Writer(w) => {
                let mut w = w.lock().unwrap_or_else(PoisonError::into_inner);
                write_locked(&mut *w, &buf)
            }
        }
    }

    fn health(&self) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        match &self.out {
            Output::Stdout => std::io::stdout().lock().flush(),
            Output::Writer(w) => w.lock().unwrap_or_else(PoisonError::into_inner).flush(),
        }
        .map_err(|e| SinkError::io("flushing standard output", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitoring_common::Event;

    /// A writer whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn batches_written_from_many_threads_never_interleave() {
        let out = Shared::default();
        let sink = Arc::new(ConsoleSink::with_writer(Box::new(out.clone())));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || {
                    for b in 0..50 {
                        let events = (0..20)
                            .map(|i| Event::log(i, "t", format!("t{t} b{b} e{i}")))
                            .collect();
                        let batch = Arc::new(IngestBatch {
                            agent_id: "a".into(),
                            stream_id: t,
                            sequence: b,
                            received_ns: 0,
                            events,
                        });
                        sink.write(&[batch]).expect("written");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        let messages: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value =
                    serde_json::from_str(l).expect("one JSON object per line");
                v["message"].as_str().expect("message").to_string()
            })
            .collect();
        assert_eq!(messages.len(), 4 * 50 * 20);
        // Each batch's 20 lines are contiguous and in order.
        for chunk in messages.chunks(20) {
            let prefix = chunk[0].rsplit_once(' ').expect("prefix").0;
            for (i, m) in chunk.iter().enumerate() {
                assert_eq!(m, &format!("{prefix} e{i}"), "interleaved: {chunk:?}");
            }
        }
    }
}
