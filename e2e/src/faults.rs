//! Faults the tests inflict on the collector's store, with nothing but real files:
//! a write lock on its SQLite day files held from the test process (commits wait for
//! it, then fail with "database is locked"), and a small tmpfs in a private mount
//! namespace that a filler file makes full.

use std::ffi::OsString;

use rusqlite::Connection;

use crate::*;

/// Connections to the collector's day files that can take and release the write
/// lock. In WAL mode `BEGIN IMMEDIATE` is what blocks a writer (`BEGIN EXCLUSIVE`
/// is the same there, and readers are never blocked, so the REST API still answers).
pub struct StoreLock {
    conns: Vec<(PathBuf, Connection)>,
    held: bool,
}

/// The UTC day number of now.
fn today() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / 86_400) as i64
}

/// The collector's name of a day file: `events-YYYY-MM-DD.db` (H. Hinnant's
/// civil-from-days).
pub fn day_file_name(day: i64) -> String {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("events-{y:04}-{m:02}-{d:02}.db")
}

impl StoreLock {
    /// Opens every day file in `store`, and today's and tomorrow's, creating them in
    /// WAL mode if missing: a batch received after midnight must not slip past the
    /// lock into a new file. (The collector adds its schema to a file it finds empty.)
    pub fn open(store: &Path) -> Result<StoreLock> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(store)
            .with_context(|| format!("listing {}", store.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("events-") && n.ends_with(".db"))
            })
            .collect();
        for day in [today(), today() + 1] {
            let p = store.join(day_file_name(day));
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        paths.sort();
        let mut conns = Vec::new();
        for path in paths {
            let mut conn =
                Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // SQLite's own busy handler sleeps up to 100 ms between attempts, and the
            // collector's workers, committing back to back, would win nearly every
            // race for the lock: poll every millisecond instead, for up to 30 s.
            conn.busy_handler(Some(|attempt| {
                std::thread::sleep(Duration::from_millis(1));
                attempt < 30_000
            }))?;
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if mode != "wal" {
                bail!("{} is in journal mode {mode}, not wal", path.display());
            }
            conns.push((path, conn));
        }
        Ok(StoreLock { conns, held: false })
    }

    /// Takes the write lock on every file, waiting up to 30 s for the collector's
    /// commit in progress to finish.
    pub fn lock(&mut self) -> Result<()> {
        for (path, conn) in &self.conns {
            conn.execute_batch("BEGIN IMMEDIATE")
                .with_context(|| format!("locking {}", path.display()))?;
        }
        self.held = true;
        Ok(())
    }

    /// Releases the write lock (nothing was written).
    pub fn unlock(&mut self) -> Result<()> {
        if self.held {
            for (path, conn) in &self.conns {
                conn.execute_batch("ROLLBACK")
                    .with_context(|| format!("unlocking {}", path.display()))?;
            }
            self.held = false;
        }
        Ok(())
    }

    /// Takes the lock for `held` of every `period` on a thread until `stop` is set:
    /// a store that accepts writes only now and then. The thread returns how many
    /// times it took the lock.
    pub fn pulse(
        mut self,
        held: Duration,
        period: Duration,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<Result<u64>> {
        std::thread::spawn(move || {
            let mut pulses = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                self.lock()?;
                std::thread::sleep(held);
                self.unlock()?;
                pulses += 1;
                std::thread::sleep(period.saturating_sub(held));
            }
            Ok(pulses)
        })
    }
}

/// A command line that runs the collector ([`CollectorOptions::wrapper`]) in a
/// private mount namespace with a tmpfs of `size_mib` MiB mounted on `dir`: nothing
/// is left mounted when the collector dies, however the test ends. As root the
/// namespace needs nothing else; otherwise it is made inside a user namespace
/// (`unshare -rm`). Where neither works, the collector does not start and its log
/// says why.
pub fn tmpfs_wrapper(dir: &Path, size_mib: u32) -> Result<Vec<OsString>> {
    let dir = dir.to_str().context("tmpfs mount point is not UTF-8")?;
    if dir.contains('\'') {
        bail!("tmpfs mount point {dir:?} contains a quote");
    }
    std::fs::create_dir_all(dir)?;
    let unshare = ["/usr/bin/unshare", "/bin/unshare"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("the full-disk test needs unshare(1) (package util-linux)")?;
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd: Vec<OsString> = vec![unshare.into()];
    if !root {
        cmd.extend(["--user".into(), "--map-root-user".into()]);
    }
    let script = format!(
        "mount -t tmpfs -o size={size_mib}m tmpfs '{dir}' || {{ \
         echo 'e2e: cannot mount a tmpfs on {dir} in a private mount namespace \
         (needs root, or unprivileged user namespaces for unshare -rm)' >&2; exit 97; }}; \
         exec \"$0\" \"$@\""
    );
    cmd.extend([
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
        "sh".into(),
        "-c".into(),
        script.into(),
    ]);
    Ok(cmd)
}

/// `path` as the process `pid` sees it, reached from this process through
/// `/proc/<pid>/root` (which crosses into that process's mount namespace).
pub fn in_namespace_of(pid: u32, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    Path::new(&format!("/proc/{pid}/root")).join(relative)
}

/// Fills the filesystem holding `dir` with a file `dir/filler` until a write fails
/// with ENOSPC; the bytes written.
pub fn fill_filesystem(dir: &Path) -> Result<u64> {
    let path = dir.join("filler");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut written = std::fs::metadata(&path)?.len();
    // Large writes first, then small ones for the last partial chunk.
    for chunk in [1 << 20, 4096, 512] {
        let buf = vec![0xA5u8; chunk];
        loop {
            match file.write(&buf) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
            }
        }
    }
    Ok(written)
}

/// Deletes the filler file of [`fill_filesystem`].
pub fn remove_filler(dir: &Path) -> Result<()> {
    let path = dir.join("filler");
    std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))
}

/// Free bytes on the filesystem holding `path` (statvfs).
pub fn free_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // statvfs is plain data, so all zeroes is a valid value to fill in.
    #[allow(unsafe_code)]
    let (rc, st) = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st), st)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statvfs {}", path.display()));
    }
    Ok(st.f_bavail * st.f_frsize)
}
