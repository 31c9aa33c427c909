//! Finding the files to tail: glob patterns minus exclusions, matched again at every
//! rescan, with file system notifications (inotify, through `notify`) to make the
//! rescans and reads happen sooner.
//!
//! The periodic rescan is the truth; notifications only wake the loop early. They can
//! overflow or fail (no watches left: LESSONS #13): that is counted and answered with
//! a rescan, never trusted to be complete.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;

use globset::{GlobSet, GlobSetBuilder};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tracing::{debug, warn};

use super::config::compile_exclude;
use super::{FileMetrics, FileSourceError};

/// One regular file the patterns match now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    /// The path it was matched under.
    pub path: PathBuf,
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
}

/// The compiled `files` and `exclude` patterns.
#[derive(Debug)]
pub(super) struct Discovery {
    patterns: Vec<String>,
    /// Exclusions with a `/`, matched against the whole path.
    exclude_path: GlobSet,
    /// Exclusions without a `/`, matched against the file name.
    exclude_name: GlobSet,
}

impl Discovery {
    /// Compiles the patterns (already validated by the configuration).
    pub fn new(files: &[String], exclude: &[String]) -> Result<Discovery, FileSourceError> {
        let pattern_error = |pattern: &str, error: String| FileSourceError::Pattern {
            pattern: pattern.to_string(),
            error,
        };
        for pattern in files {
            glob::Pattern::new(pattern).map_err(|e| pattern_error(pattern, e.to_string()))?;
        }
        let mut by_path = GlobSetBuilder::new();
        let mut by_name = GlobSetBuilder::new();
        for pattern in exclude {
            let glob =
                compile_exclude(pattern).map_err(|e| pattern_error(pattern, e.to_string()))?;
            if pattern.contains('/') {
                by_path.add(glob);
            } else {
                by_name.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| pattern_error("exclude", e.to_string()))
        };
        Ok(Discovery {
            patterns: files.to_vec(),
            exclude_path: build(by_path)?,
            exclude_name: build(by_name)?,
        })
    }

    /// Whether `path` is excluded.
    pub fn is_excluded(&self, path: &Path) -> bool {
        self.exclude_path.is_match(path)
            || path
                .file_name()
                .is_some_and(|name| self.exclude_name.is_match(Path::new(name)))
    }

    /// The regular files matched now, each (device, inode) once, in pattern order.
    /// Unreadable directories and files that vanish meanwhile are skipped.
    pub fn scan(&self) -> Vec<Candidate> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for pattern in &self.patterns {
            let Ok(paths) = glob::glob(pattern) else {
                continue; // checked in new()
            };
            for entry in paths {
                let path = match entry {
                    Ok(path) => path,
                    Err(error) => {
                        debug!(message = "Skipping unreadable path while matching patterns.", %error);
                        continue;
                    }
                };
                if self.is_excluded(&path) {
                    continue;
                }
                // Follows symlinks: the file read is the target.
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                    out.push(Candidate {
                        path,
                        dev: meta.dev(),
                        ino: meta.ino(),
                    });
                }
            }
        }
        out
    }

    /// The directories to watch: for each pattern, its longest directory prefix
    /// without glob characters, recursively when the rest spans directories.
    pub fn watch_roots(&self) -> Vec<(PathBuf, RecursiveMode)> {
        let mut roots: Vec<(PathBuf, RecursiveMode)> = Vec::new();
        for pattern in &self.patterns {
            let (root, recursive) = watch_root(Path::new(pattern));
            // Watching all of `/` recursively would exhaust inotify watches; rely on
            // the rescan for such patterns.
            if recursive && root.parent().is_none() {
                continue;
            }
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match roots.iter_mut().find(|(r, _)| *r == root) {
                Some((_, m)) if mode == RecursiveMode::Recursive => *m = mode,
                Some(_) => {}
                None => roots.push((root, mode)),
            }
        }
        roots
    }
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The fixed directory part of `pattern` and whether the variable part spans more
/// than one path component.
fn watch_root(pattern: &Path) -> (PathBuf, bool) {
    let components: Vec<Component<'_>> = pattern.components().collect();
    let first_glob = components
        .iter()
        .position(|c| has_glob_chars(&c.as_os_str().to_string_lossy()));
    match first_glob {
        // A literal path: watch its directory.
        None => (
            pattern.parent().unwrap_or(Path::new("/")).to_path_buf(),
            false,
        ),
        Some(i) => {
            let root: PathBuf = components[..i].iter().collect();
            let recursive = i + 1 < components.len()
                || components[i].as_os_str().to_string_lossy().contains("**");
            (root, recursive)
        }
    }
}

/// File system notifications for the pattern roots, waking the read loop.
pub(super) struct FsWatcher {
    watcher: RecommendedWatcher,
    roots: Vec<(PathBuf, RecursiveMode)>,
    watched: HashSet<PathBuf>,
    warned: bool,
    metrics: Arc<FileMetrics>,
}

impl FsWatcher {
    /// Starts watching. Data writes only wake the loop; creations, removals and
    /// renames (and any overflow or error) also ask for a rescan through `rescan`.
    /// `None` when notifications are unavailable: the loop then polls.
    pub fn start(
        roots: Vec<(PathBuf, RecursiveMode)>,
        wake: SyncSender<()>,
        rescan: Arc<AtomicBool>,
        metrics: Arc<FileMetrics>,
    ) -> Option<FsWatcher> {
        let handler_metrics = Arc::clone(&metrics);
        let handler = move |result: notify::Result<notify::Event>| {
            match result {
                Ok(event) if event.need_rescan() => {
                    handler_metrics.watch_errors.inc();
                    rescan.store(true, Ordering::Release);
                }
                // Our own opens and reads show up as access events.
                Ok(event) if matches!(event.kind, EventKind::Access(_)) => return,
                Ok(event) if matches!(event.kind, EventKind::Modify(_)) => {
                    if matches!(
                        event.kind,
                        EventKind::Modify(notify::event::ModifyKind::Name(_))
                    ) {
                        rescan.store(true, Ordering::Release);
                    }
                }
                Ok(_) => rescan.store(true, Ordering::Release),
                Err(_) => {
                    handler_metrics.watch_errors.inc();
                    rescan.store(true, Ordering::Release);
                }
            }
            // A full channel means a wake-up is already pending.
            wake.try_send(()).ok();
        };
        match notify::recommended_watcher(handler) {
            Ok(watcher) => {
                let mut w = FsWatcher {
                    watcher,
                    roots,
                    watched: HashSet::new(),
                    warned: false,
                    metrics,
                };
                w.refresh();
                Some(w)
            }
            Err(error) => {
                metrics.watch_errors.inc();
                warn!(message = "File system notifications unavailable; polling only.", %error);
                None
            }
        }
    }

    /// Adds watches for roots that could not be watched before (not created yet).
    pub fn refresh(&mut self) {
        for (root, mode) in &self.roots {
            if self.watched.contains(root) || !root.is_dir() {
                continue;
            }
            match self.watcher.watch(root, *mode) {
                Ok(()) => {
                    self.watched.insert(root.clone());
                }
                Err(error) => {
                    self.metrics.watch_errors.inc();
                    if !self.warned {
                        self.warned = true;
                        warn!(
                            message = "Cannot watch directory; relying on rescans for it.",
                            path = %root.display(),
                            %error,
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x\n").unwrap();
    }

    #[test]
    fn matches_globs_minus_exclusions() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            "a.log",
            "b.log",
            "c.txt",
            "secret.log",
            "old.log.gz",
            "sub/d.log",
        ] {
            touch(&d.join(name));
        }
        std::fs::create_dir(d.join("dir.log")).unwrap();
        let files = vec![
            format!("{}/*.log", d.display()),
            format!("{}/**/*.log", d.display()),
            format!("{}/*.gz", d.display()),
        ];
        let exclude = vec![format!("{}/secret*", d.display()), "*.gz".to_string()];
        let disc = Discovery::new(&files, &exclude).unwrap();
        let mut names: Vec<String> = disc
            .scan()
            .into_iter()
            .map(|c| c.path.strip_prefix(d).unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, vec!["a.log", "b.log", "sub/d.log"]);
    }

    #[test]
    fn same_file_twice_is_one_candidate() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("a.log"));
        std::os::unix::fs::symlink(dir.path().join("a.log"), dir.path().join("link.log")).unwrap();
        let disc = Discovery::new(&[format!("{}/*.log", dir.path().display())], &[]).unwrap();
        assert_eq!(disc.scan().len(), 1);
    }

    #[test]
    fn watch_roots_stop_at_the_first_glob() {
        assert_eq!(
            watch_root(Path::new("/var/log/*.log")),
            ("/var/log".into(), false)
        );
        assert_eq!(
            watch_root(Path::new("/var/log/**/*.log")),
            ("/var/log".into(), true)
        );
        assert_eq!(watch_root(Path::new("/var/*/x.log")), ("/var".into(), true));
        assert_eq!(
            watch_root(Path::new("/srv/app.log")),
            ("/srv".into(), false)
        );
        let disc =
            Discovery::new(&["/*/x.log".into(), "/a/*.log".into(), "/a/**".into()], &[]).unwrap();
        assert_eq!(
            disc.watch_roots(),
            vec![("/a".into(), RecursiveMode::Recursive)]
        );
    }
}
