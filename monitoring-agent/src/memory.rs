//! Gives the memory of a burst back to the system once the agent is quiet again.
//!
//! glibc's allocator keeps what a burst freed (the backlog read at start, a log
//! storm) in its per-thread arenas: small blocks sit in bins, and a heap shrinks only
//! from its top, so one live block pins everything below it. The agent runs on every
//! machine and spends most of its life nearly idle, so after a burst this task asks
//! glibc (`malloc_trim`) to release the free pages. Measured on the idle benchmark:
//! about 1 MiB of the 3 MiB of anonymous memory the start-up backlog left behind.
//!
//! The same goes for code: the pages of the binary run only at start (configuration,
//! TLS set-up, first scans) stay mapped: 4.5 of its 7 MiB of code were resident
//! in an idle agent. Once start-up is over, the agent unmaps the parts of its own
//! binary it never wrote to ([`release_code_pages`]); they stay in the page cache and
//! what is still run faults back in (about 1 MiB when idle).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often the event count is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// When to trim: after at least `burst` events since the last trim, in the first
/// check period that saw at most `quiet` events.
#[derive(Debug, Clone, Copy)]
pub struct TrimPolicy {
    /// Events since the last trim that make a burst worth trimming after.
    pub burst: u64,
    /// Most events in one check period that still count as quiet.
    pub quiet: u64,
}

impl Default for TrimPolicy {
    fn default() -> Self {
        TrimPolicy {
            burst: 5_000,
            quiet: 500,
        }
    }
}

/// The decision, apart from the clock and the allocator.
#[derive(Debug, Default)]
struct Tracker {
    last_seen: u64,
    at_last_trim: u64,
    code_released: bool,
}

/// What a check asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Due {
    /// Trim the heap: quiet after a burst.
    trim: bool,
    /// Release the start-up code: the first quiet period.
    release_code: bool,
}

impl Tracker {
    /// Takes the running event count at a check.
    fn check(&mut self, policy: TrimPolicy, total: u64) -> Due {
        let recent = total.saturating_sub(self.last_seen);
        self.last_seen = total;
        let mut due = Due::default();
        if recent > policy.quiet {
            return due;
        }
        if !self.code_released {
            self.code_released = true;
            due.release_code = true;
        }
        if total.saturating_sub(self.at_last_trim) >= policy.burst {
            self.at_last_trim = total;
            due.trim = true;
        }
        due
    }
}

/// Watches `events` (the batcher's count of events batched) and trims after each
/// burst until `stop` is cancelled.
pub async fn run(events: Counter, policy: TrimPolicy, stop: CancellationToken) {
    let mut tracker = Tracker::default();
    // Not at once: the first check must see whether start-up reads a backlog.
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + CHECK_EVERY, CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let due = tracker.check(policy, events.get());
        if due.trim {
            let released = trim();
            debug!(
                message = "Quiet after a burst; returned free memory.",
                released
            );
        }
        if due.release_code {
            match release_code_pages() {
                Ok(bytes) => debug!(message = "Start-up over; unmapped start-up code.", bytes),
                Err(error) => debug!(message = "Cannot unmap start-up code.", %error),
            }
        }
    }
}

/// Unmaps the pages of the agent's own binary that the process never wrote to (its
/// code and read-only data, not the relocated data): they stay in the page cache and
/// fault back in when used. Returns the bytes of the mappings released.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn release_code_pages() -> std::io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for (start, end) in clean_mappings_of(&smaps, &exe.to_string_lossy()) {
        // SAFETY: [start, end) is a whole private, non-writable mapping of our own
        // binary with no anonymous (copied-on-write) page: every page in it is the
        // file's content, so dropping the mapping's pages loses nothing, and the
        // next access (this very code included) faults the same bytes back in from
        // the page cache.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        released += end - start;
    }
    Ok(released)
}

/// Nothing to do where there is no `/proc/self/smaps`.
#[cfg(not(target_os = "linux"))]
pub fn release_code_pages() -> std::io::Result<usize> {
    Ok(0)
}

/// The address ranges, in an smaps text, of the private mappings of `path` that are
/// not writable and hold no anonymous page.
fn clean_mappings_of(smaps: &str, path: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    let mut anonymous: Option<u64> = None;
    for line in smaps.lines() {
        if let Some(header) = mapping_header(line, path) {
            if let (Some(range), Some(0)) = (current.take(), anonymous.take()) {
                found.push(range);
            }
            current = header;
            continue;
        }
        if let Some(kb) = line.strip_prefix("Anonymous:") {
            anonymous = kb.trim().trim_end_matches("kB").trim().parse().ok();
        }
    }
    if let (Some(range), Some(0)) = (current, anonymous) {
        found.push(range);
    }
    found
}

/// For an smaps line: `None` if it is not a mapping's header (`start-end perms
/// offset dev inode [path]`), `Some(None)` for a mapping to leave alone,
/// `Some(Some(range))` for a private, non-writable mapping of `path`.
#[allow(clippy::option_option)]
fn mapping_header(line: &str, path: &str) -> Option<Option<(usize, usize)>> {
    let mut rest = line;
    let mut fields = [""; 5];
    for field in &mut fields {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        (*field, rest) = rest.split_at(end);
    }
    let [range, perms, _offset, _device, _inode] = fields;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = perms.as_bytes();
    if perms.len() != 4 {
        return None;
    }
    // The path is the rest of the line (it may hold spaces).
    let ours = rest.trim() == path && perms[0] == b'r' && perms[1] == b'-' && perms[3] == b'p';
    Some(ours.then_some((start, end)))
}

/// Returns free heap pages to the system; true if any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() -> bool {
    // SAFETY: malloc_trim has no preconditions: it takes each arena's lock itself
    // and only releases memory that is free.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators return memory on their own terms: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_per_burst_when_it_is_over() {
        let policy = TrimPolicy {
            burst: 100,
            quiet: 10,
        };
        let mut t = Tracker::default();
        let mut trims = |total| t.check(policy, total).trim;
        // A steady trickle never adds up to a trim before a burst.
        assert!(!trims(5));
        assert!(!trims(10));
        // The burst: not while it lasts.
        assert!(!trims(500));
        assert!(!trims(900));
        // Quiet again: once.
        assert!(trims(905));
        assert!(!trims(906));
        assert!(!trims(906));
        // A busy spell that is not a burst's worth since the trim: nothing.
        assert!(!trims(980));
        assert!(!trims(985));
        // Enough again, then quiet.
        assert!(!trims(1_200));
        assert!(trims(1_201));
    }

    #[test]
    fn start_up_code_is_released_once_at_the_first_quiet_check() {
        let policy = TrimPolicy::default();
        let mut t = Tracker::default();
        // The start-up backlog is still being read.
        assert_eq!(t.check(policy, 20_000), Due::default());
        assert_eq!(
            t.check(policy, 20_100),
            Due {
                trim: true,
                release_code: true
            }
        );
        assert!(!t.check(policy, 20_100).release_code);
    }

    #[test]
    fn only_clean_read_only_private_mappings_of_the_binary_are_released() {
        let smaps = "\
1000-3000 r--p 00000000 fe:00 42                         /opt/agent bin
Rss:                   8 kB
Anonymous:             0 kB
3000-5000 r-xp 00002000 fe:00 42                         /opt/agent bin
Anonymous:             0 kB
VmFlags: rd ex mr mw me dw
5000-6000 r--p 00004000 fe:00 42                         /opt/agent bin
Anonymous:             4 kB
6000-7000 rw-p 00005000 fe:00 42                         /opt/agent bin
Anonymous:             0 kB
7000-8000 r-xp 00000000 fe:00 43                         /usr/lib/libc.so.6
Anonymous:             0 kB
8000-9000 rw-p 00000000 00:00 0
Anonymous:             4 kB
9000-a000 r-xs 00000000 fe:00 42                         /opt/agent bin
Anonymous:             0 kB
";
        // Read-only and executable segments yes; the relocated one (anonymous
        // pages), the writable one, libc's, an anonymous one and a shared one no.
        assert_eq!(
            clean_mappings_of(smaps, "/opt/agent bin"),
            vec![(0x1000, 0x3000), (0x3000, 0x5000)]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn code_runs_on_after_its_pages_are_released() {
        fn work(n: u64) -> u64 {
            (1..=n).map(|i| i * i % 7).sum()
        }
        let before = work(1000);
        let released = release_code_pages().unwrap();
        assert!(released > 0, "the test binary's own code is mapped");
        // Code and constants fault back in: same results, the allocator still works.
        assert_eq!(work(1000), before);
        let v: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        assert_eq!(v[999], "999");
    }

    #[test]
    fn trimming_is_safe_at_any_time() {
        let garbage: Vec<Vec<u8>> = (0..10_000).map(|i| vec![0; i % 300]).collect();
        drop(garbage);
        trim();
        // Still usable.
        let v = vec![1u8; 1 << 20];
        assert_eq!(v.iter().map(|&b| u64::from(b)).sum::<u64>(), 1 << 20);
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_stops_when_cancelled() {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(Counter::default(), TrimPolicy::default(), stop.clone()));
        tokio::time::sleep(CHECK_EVERY * 3).await;
        stop.cancel();
        task.await.unwrap();
    }
}
