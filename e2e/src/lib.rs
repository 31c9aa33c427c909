//! Harness for end-to-end tests: starts the real `monitoring-collector` and
//! `monitoring-agent` binaries on loopback ports with configs written to a temporary
//! directory, writes log lines with unique sequence numbers, and counts through the
//! REST API what arrived.
//!
//! Modules: `collector` and `agent` (the processes), `lines` (numbered lines and
//! their tally), `http` (API clients), `observe` (self-metrics, peak memory),
//! `faults` (a held lock on the store, a full tmpfs), `sinks` (what the fan-out
//! sinks wrote: NDJSON files, series in Prometheus), `pg_database` (a database of
//! its own on the test PostgreSQL server), `stores` (a fresh database on each
//! primary store's real server) and `failover` (one agent, several collectors: the
//! tally over all of them and the kill-the-connected-one scenario).
//!
//! The binaries are taken from the target directory this test was built into
//! (`scripts/test.sh` builds them before running the tests).

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

mod agent;
mod collector;
mod failover;
mod faults;
mod http;
mod journal;
mod lines;
mod metrics;
mod observe;
mod pg_database;
mod proxy;
mod sinks;
mod spool_files;
mod stores;

pub use agent::*;
pub use collector::*;
pub use failover::*;
pub use faults::*;
pub use http::*;
pub use journal::*;
pub use lines::*;
pub use metrics::*;
pub use observe::*;
pub use pg_database::*;
pub use proxy::*;
pub use sinks::*;
pub use spool_files::*;
pub use stores::*;

/// The directory holding the workspace's binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/<test>-<hash> → target/debug
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn bin(name: &str) -> Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.exists() {
        bail!(
            "{} is missing: build the binaries first (scripts/test.sh does: cargo build --workspace --bins)",
            p.display()
        );
    }
    Ok(p)
}

/// A free loopback port (bound, then released: good enough on a test machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends SIGTERM (graceful) to a child.
pub fn sigterm(child: &Child) {
    let pid = child.id() as libc::pid_t;
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// SIGKILL and reap; a child that already exited is fine.
fn kill(child: &mut Child) {
    if let Err(error) = child.kill().and_then(|()| child.wait().map(drop)) {
        eprintln!("killing pid {}: {error}", child.id());
    }
}

/// Starts `bin run --config <config>` with its output appended to `log`, behind
/// `wrapper` (a command line the binary and its arguments are appended to) unless
/// that is empty.
fn spawn(wrapper: &[std::ffi::OsString], bin: &Path, config: &Path, log: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// Sends SIGHUP (configuration reload) to a child.
pub fn sighup(child: &Child) {
    let pid = child.id() as libc::pid_t;
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGHUP);
    }
}

/// Polls `check` every 50 ms until it holds; an error naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Locks `m`, ignoring poisoning (a failed test already reported it).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Holds the test binary's lock: load-sensitive tests (a writer at a fixed rate, a
/// rotation storm, a slow sink) run one at a time, so that each measures the agent
/// rather than its neighbours.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    lock(&SERIAL)
}
