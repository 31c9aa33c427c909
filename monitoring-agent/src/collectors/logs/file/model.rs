//! Model-based test of the file server: random sequences of writes, reads,
//! acknowledgements, rename and copy-truncate rotations and restarts, on real files.
//! The property: every line written is committed exactly once.
//!
//! The server is driven step by step (scan, read rounds) without its thread or timers,
//! so each sequence is deterministic. A restart writes the checkpoints, forgets every
//! line read but not acknowledged (as a crashed agent would) and starts a new server
//! from the checkpoint file. Rotations respect what any tailer needs: a file is seen
//! once before it is renamed out of the patterns, copies match the patterns, and a
//! copy-truncated file has at least `fingerprint_bytes` bytes (a shorter copy is only
//! recognised while its original's content is remembered in memory).

use std::collections::{HashSet, VecDeque};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::Arc;

use monitoring_common::EventKind;
use proptest::prelude::*;

use super::checkpoints::Checkpoints;
use super::discovery::Discovery;
use super::server::Server;
use super::tail::{Deliver, Stopped};
use super::{FileMetrics, LogsConfig};
use crate::pipeline::Envelope;

const FINGERPRINT_BYTES: usize = 16;

#[derive(Debug, Clone)]
enum Op {
    /// Append this many lines to `a.log`.
    Write(u8),
    /// Scan and read everything there is.
    Step,
    /// Acknowledge this many of the oldest lines in flight.
    Ack(u8),
    /// Rename `a.log` away, to a name the patterns match or not.
    Rename { matched: bool },
    /// Copy `a.log` beside it, then truncate it.
    CopyTruncate,
    /// Checkpoint, lose what is in flight, start again.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..12).prop_map(Op::Write),
        3 => Just(Op::Step),
        3 => (1u8..20).prop_map(Op::Ack),
        1 => any::<bool>().prop_map(|matched| Op::Rename { matched }),
        1 => Just(Op::CopyTruncate),
        1 => Just(Op::Restart),
    ]
}

/// The pipeline and the collector: lines in flight, lines committed.
#[derive(Default)]
struct Collector {
    in_flight: VecDeque<Envelope>,
    committed: Vec<String>,
}

impl Deliver for Collector {
    fn deliver(&mut self, batch: &mut Vec<Envelope>) -> Result<(), Stopped> {
        self.in_flight.extend(batch.drain(..));
        Ok(())
    }
}

impl Collector {
    fn ack(&mut self, n: usize) {
        for _ in 0..n {
            let Some(e) = self.in_flight.pop_front() else {
                return;
            };
            let (progress, end) = e.ack.as_ref().unwrap();
            progress.advance(*end);
            let EventKind::Log(log) = e.to_event().unwrap().kind else {
                unreachable!()
            };
            self.committed.push(log.message);
        }
    }
}

struct World {
    logs: tempfile::TempDir,
    state: tempfile::TempDir,
    config: LogsConfig,
    server: Server,
    collector: Collector,
    written: Vec<String>,
    generation: usize,
}

impl World {
    fn new() -> World {
        let logs = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let config = LogsConfig {
            files: vec![format!("{}/a.log*", logs.path().display())],
            fingerprint_bytes: FINGERPRINT_BYTES,
            rotated_idle_close_ms: 0,
            // The model holds a last line until its newline arrives.
            partial_line_timeout_ms: 0,
            ..LogsConfig::default()
        };
        let server = World::server(&config, state.path());
        World {
            logs,
            state,
            config,
            server,
            collector: Collector::default(),
            written: Vec::new(),
            generation: 0,
        }
    }

    fn server(config: &LogsConfig, state: &std::path::Path) -> Server {
        Server::new(
            config.clone(),
            Discovery::new(&config.files, &config.exclude).unwrap(),
            Checkpoints::load(state, config.fingerprint_bytes).unwrap(),
            Arc::new(FileMetrics::default()),
        )
    }

    fn step(&mut self) {
        self.server.scan();
        for _ in 0..1000 {
            let more = self.server.read_round(&mut self.collector).unwrap().more;
            if self.server.rescan_requested {
                self.server.scan();
            } else if !more {
                return;
            }
        }
        panic!("the server never settles");
    }

    fn apply(&mut self, op: &Op) {
        let a = self.logs.path().join("a.log");
        match op {
            Op::Write(n) => {
                let mut f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&a)
                    .unwrap();
                for _ in 0..*n {
                    let seq = self.written.len();
                    let line = format!("L{seq:05}-{}", "x".repeat(seq * 7 % 23));
                    writeln!(f, "{line}").unwrap();
                    self.written.push(line);
                }
            }
            Op::Step => self.step(),
            Op::Ack(n) => self.collector.ack(usize::from(*n)),
            Op::Rename { matched } if a.exists() => {
                self.generation += 1;
                let to = if *matched {
                    format!("a.log.r{}", self.generation)
                } else {
                    // The file must have been seen once; any tailer needs that.
                    self.server.scan();
                    format!("rotated-{}", self.generation)
                };
                fs::rename(&a, self.logs.path().join(to)).unwrap();
            }
            Op::CopyTruncate
                if fs::metadata(&a).is_ok_and(|m| m.len() >= FINGERPRINT_BYTES as u64) =>
            {
                self.generation += 1;
                fs::copy(
                    &a,
                    self.logs.path().join(format!("a.log.c{}", self.generation)),
                )
                .unwrap();
                OpenOptions::new()
                    .write(true)
                    .open(&a)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            Op::Rename { .. } | Op::CopyTruncate => {}
            Op::Restart => {
                assert!(self.server.checkpoint());
                self.collector.in_flight.clear();
                self.server = World::server(&self.config, self.state.path());
            }
        }
    }

    /// Reads and acknowledges until nothing is left, then checks the property.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..10 {
            self.step();
            self.collector.ack(usize::MAX);
        }
        let mut seen = HashSet::new();
        for line in &self.collector.committed {
            prop_assert!(seen.insert(line.clone()), "duplicate line {}", line);
        }
        let written: HashSet<String> = self.written.iter().cloned().collect();
        let mut missing: Vec<&String> = written.difference(&seen).collect();
        missing.sort();
        prop_assert!(missing.is_empty(), "missing lines {:?}", missing);
        prop_assert_eq!(seen.len(), written.len());
        Ok(())
    }
}

/// 64 cases by default (each does real file I/O and fsyncs); `PROPTEST_CASES`
/// raises it for a longer hunt.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_line_is_committed_exactly_once(ops in prop::collection::vec(op(), 1..60)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
        }
        world.finish()?;
    }
}
