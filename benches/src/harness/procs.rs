//! The processes under test: started from the release binaries beside the harness,
//! measured from `/proc` (CPU seconds, resident memory), stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running agent or collector.
pub struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// CPU and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User plus system CPU seconds so far (threads that ended included).
    pub cpu_seconds: f64,
    /// Resident memory now, bytes.
    pub rss: u64,
    /// Peak resident memory, bytes.
    pub peak_rss: u64,
    /// Of `rss`, the anonymous memory (heap, stacks): what the process allocated,
    /// as opposed to pages of its binary and libraries.
    pub rss_anon: u64,
}

/// The release binary `name` beside the running harness (`target/release/`).
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the harness binary")?;
    let dir = exe
        .parent()
        .context("the harness binary has no directory")?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build the release binaries first (`cargo build --release --bins`, \
             which scripts/bench.sh does)",
            path.display()
        );
    }
    Ok(path)
}

impl Proc {
    /// Starts `monitoring-<name> run --config <config>`, output to `log`.
    pub fn start(name: &'static str, config: &Path, log: &Path) -> Result<Proc> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary(&format!("monitoring-{name}"))?)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        Ok(Proc {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails, with its log, if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the {} exited with {status}; its log:\n{}",
                self.name,
                self.log()
            );
        }
        Ok(())
    }

    /// Its CPU and memory now.
    pub fn usage(&self) -> Result<Usage> {
        usage(self.pid())
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit; returns its log.
    pub fn stop(mut self, timeout: Duration) -> Result<String> {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) with a pid we own and a valid signal has no memory effects.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!(
                        "the {} exited with {status}; its log:\n{}",
                        self.name,
                        self.log()
                    );
                }
                return Ok(self.log());
            }
            if Instant::now() > deadline {
                kill(&mut self.child);
                bail!("the {} did not stop within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            kill(&mut self.child);
        }
    }
}

/// SIGKILL and reap; a child that already exited is fine.
fn kill(child: &mut Child) {
    if let Err(error) = child.kill().and_then(|()| child.wait().map(drop)) {
        eprintln!("could not kill process {}: {error}", child.id());
    }
}

/// CPU and memory of process `pid` now.
pub fn usage(pid: u32) -> Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat has no field {}", i + 3))
    };
    let cpu_seconds = (ticks(11)? + ticks(12)?) as f64 / clock_ticks() as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Usage {
        cpu_seconds,
        rss: kib("VmRSS:") * 1024,
        peak_rss: kib("VmHWM:") * 1024,
        rss_anon: kib("RssAnon:") * 1024,
    })
}

fn clock_ticks() -> u64 {
    #[allow(unsafe_code)]
    // SAFETY: sysconf reads a constant; no pointers.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn usage_reads_this_process() {
        let before = usage(std::process::id()).unwrap();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = usage(std::process::id()).unwrap();
        assert!(
            after.cpu_seconds - before.cpu_seconds >= 0.1,
            "{before:?} {after:?}"
        );
        assert!(after.rss > 0 && after.peak_rss >= after.rss);
    }
}
