//! The end-to-end benchmark harness: a load generator writing numbered loghub lines
//! into files, the real agent and collector (release builds) between them and a
//! store, `/proc` for CPU and memory, and a verifier that counts every line.
//!
//! `monitoring-bench` (src/bin) runs the [`scenario`]s and prints the [`report`]
//! table; scripts/bench.sh builds and runs it.

pub mod generator;
pub mod procs;
pub mod report;
pub mod scenario;
pub mod stack;
pub mod verify;
