//! The `[collectors.logs]` table: which files to tail and how.

use monitoring_common::config::{Problem, Validate};
use serde::{Deserialize, Serialize};

use crate::collectors::logs::filter::FilterConfig;
use crate::collectors::logs::journald::JournaldConfig;

/// Where to start in a file the agent has never seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// From its first byte.
    #[default]
    Beginning,
    /// From its current end: only lines written from now on.
    End,
}

/// Configuration of the file tail source (`[collectors.logs]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Whether files are tailed at all. Default `true`.
    pub enabled: bool,
    /// Absolute glob patterns of the files to tail (`*`, `?`, `[...]` within a path
    /// component, `**` across directories). Default `["/var/log/*.log"]`.
    pub files: Vec<String>,
    /// Glob patterns of files to leave alone even though `files` matches them. A
    /// pattern with a `/` is matched against the whole path, one without against the
    /// file name (`"*.gz"`). Default `[]`.
    pub exclude: Vec<String>,
    /// Where to start in a file that is neither in the checkpoints nor created while
    /// the agent runs (files that appear while the agent runs are always read from
    /// their beginning): `"beginning"` or `"end"`. Default `"beginning"`.
    pub read_from: ReadFrom,
    /// Longest line shipped, in bytes; longer lines are cut at a character boundary
    /// to this size, the rest of the line is skipped and the cut is counted.
    /// Default `102400`.
    pub max_line_bytes: usize,
    /// How often the patterns are matched again, in milliseconds. File system
    /// notifications make discovery faster; this rescan is what is relied on.
    /// Default `1000`.
    pub rescan_interval_ms: u64,
    /// How often open files are checked for new data when no notification arrives,
    /// in milliseconds. Default `250`.
    pub poll_interval_ms: u64,
    /// How often acknowledged offsets are written to `<state dir>/files.json`, in
    /// milliseconds (only when they changed). Default `1000`.
    pub checkpoint_interval_ms: u64,
    /// How many leading bytes identify a file's content. Files whose first
    /// `fingerprint_bytes` bytes are equal are taken for copies of one another (a
    /// copy-truncate rotation); raise it if your files start with a long fixed
    /// header. Shorter files are known by device and inode until they grow.
    /// Default `256`.
    pub fingerprint_bytes: usize,
    /// Most files held open at once; files found beyond it wait for a free slot.
    /// Default `1024`.
    pub max_open_files: usize,
    /// A file renamed out of the patterns or deleted is read to its end, then closed
    /// once nothing was written to it for this long, in milliseconds. Default `5000`.
    pub rotated_idle_close_ms: u64,
    /// A file renamed out of the patterns or deleted is closed at the latest this
    /// long after it was rotated, in seconds, even if its writer still appends to it,
    /// as soon as everything written so far has been read. Default `300`.
    pub rotated_max_open_secs: u64,
    /// How long the checkpoint of a file that is gone is kept, in seconds, in case the
    /// file comes back (renamed back, a copy, a remount). Default `604800` (7 days).
    pub checkpoint_retention_secs: u64,
    /// A last line without its newline is shipped once the file has not grown for this
    /// long, in milliseconds; what is written after it then starts a new line. `0`
    /// holds it until its newline arrives. Default `5000`.
    pub partial_line_timeout_ms: u64,
    /// `[collectors.logs.multiline]`: merging lines into one event (stack traces).
    /// Default: off.
    pub multiline: MultilineConfig,
    /// `[collectors.logs.filter]`: which events ship (include and exclude regular
    /// expressions, a minimum severity), applied to each event after multiline
    /// merging. Default: every event ships.
    pub filter: FilterConfig,
    /// Units whose journal entries are read (`_SYSTEMD_UNIT`; a name without a
    /// suffix means `<name>.service`, as for `journalctl -u`). Empty: every unit.
    /// Used by the journald source only. Default `[]`.
    pub journald_units: Vec<String>,
    /// `[collectors.logs.journald]`: the journald source. Default: off.
    pub journald: JournaldConfig,
}

/// `[collectors.logs.multiline]`: which lines continue the event before them. Off
/// unless a pattern is set. A line continues the pending event when it matches
/// `continuation_pattern`, or when `start_pattern` is set and it does not match it;
/// any other line starts a new event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// Regular expression matching the first line of an event, e.g.
    /// `'^\d{4}-\d{2}-\d{2}'` for lines that start with a date. Default: none.
    pub start_pattern: Option<String>,
    /// Regular expression matching lines that continue an event, e.g.
    /// `'^(\s|Caused by:)'`. Default: none.
    pub continuation_pattern: Option<String>,
    /// Most lines in one event; the next line starts another. Default `500`.
    pub max_lines: usize,
    /// An event is shipped once no line has joined it for this long, in
    /// milliseconds. Default `1000`.
    pub timeout_ms: u64,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        MultilineConfig {
            start_pattern: None,
            continuation_pattern: None,
            max_lines: 500,
            timeout_ms: 1000,
        }
    }
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            enabled: true,
            files: vec!["/var/log/*.log".to_string()],
            exclude: Vec::new(),
            read_from: ReadFrom::Beginning,
            max_line_bytes: 102_400,
            rescan_interval_ms: 1000,
            poll_interval_ms: 250,
            checkpoint_interval_ms: 1000,
            fingerprint_bytes: 256,
            partial_line_timeout_ms: 5000,
            multiline: MultilineConfig::default(),
            filter: FilterConfig::default(),
            max_open_files: 1024,
            rotated_idle_close_ms: 5000,
            rotated_max_open_secs: 300,
            checkpoint_retention_secs: 7 * 24 * 3600,
            journald_units: Vec::new(),
            journald: JournaldConfig::default(),
        }
    }
}

/// Upper bound of `max_line_bytes`: one line is held in memory whole.
const MAX_LINE_BYTES_LIMIT: usize = 64 * 1024 * 1024;
/// Upper bound of `fingerprint_bytes`: read again at every rescan of every open file.
const MAX_FINGERPRINT_BYTES: usize = 64 * 1024;

impl Validate for LogsConfig {
    fn validate(&self) -> Vec<Problem> {
        let key = |k: &str| format!("collectors.logs.{k}");
        let mut problems = Vec::new();
        if self.enabled && self.files.is_empty() {
            problems.push(Problem::new(
                key("files"),
                "no file patterns; add one (e.g. \"/var/log/*.log\") or set enabled = false",
            ));
        }
        for pattern in &self.files {
            if !pattern.starts_with('/') {
                problems.push(Problem::new(
                    key("files"),
                    format!("pattern {pattern:?} is not an absolute path"),
                ));
            } else if let Err(e) = glob::Pattern::new(pattern) {
                problems.push(Problem::new(
                    key("files"),
                    format!("pattern {pattern:?} is not a valid glob: {e}"),
                ));
            }
        }
        for pattern in &self.exclude {
            if let Err(e) = compile_exclude(pattern) {
                problems.push(Problem::new(
                    key("exclude"),
                    format!("pattern {pattern:?} is not a valid glob: {e}"),
                ));
            }
        }
        if self.max_line_bytes == 0 || self.max_line_bytes > MAX_LINE_BYTES_LIMIT {
            problems.push(Problem::new(
                key("max_line_bytes"),
                format!("must be between 1 and {MAX_LINE_BYTES_LIMIT}"),
            ));
        }
        if self.fingerprint_bytes == 0 || self.fingerprint_bytes > MAX_FINGERPRINT_BYTES {
            problems.push(Problem::new(
                key("fingerprint_bytes"),
                format!("must be between 1 and {MAX_FINGERPRINT_BYTES}"),
            ));
        }
        if self.max_open_files == 0 {
            problems.push(Problem::new(key("max_open_files"), "must be at least 1"));
        }
        if self.partial_line_timeout_ms > 3_600_000 {
            problems.push(Problem::new(
                key("partial_line_timeout_ms"),
                "must be at most 3600000 milliseconds (0 waits for the newline)",
            ));
        }
        let m = &self.multiline;
        for (name, pattern) in [
            ("start_pattern", &m.start_pattern),
            ("continuation_pattern", &m.continuation_pattern),
        ] {
            if let Some(Err(e)) = pattern.as_deref().map(regex::Regex::new) {
                problems.push(Problem::new(
                    key(&format!("multiline.{name}")),
                    format!("is not a valid regular expression: {e}"),
                ));
            }
        }
        if m.max_lines == 0 || m.max_lines > 100_000 {
            problems.push(Problem::new(
                key("multiline.max_lines"),
                "must be between 1 and 100000",
            ));
        }
        if !(1..=3_600_000).contains(&m.timeout_ms) {
            problems.push(Problem::new(
                key("multiline.timeout_ms"),
                "must be between 1 and 3600000 milliseconds",
            ));
        }
        for (name, value) in [
            ("rescan_interval_ms", self.rescan_interval_ms),
            ("poll_interval_ms", self.poll_interval_ms),
            ("checkpoint_interval_ms", self.checkpoint_interval_ms),
        ] {
            if !(10..=3_600_000).contains(&value) {
                problems.push(Problem::new(
                    key(name),
                    "must be between 10 and 3600000 milliseconds",
                ));
            }
        }
        problems.extend(self.filter.validate("collectors.logs.filter"));
        problems.extend(self.journald.validate(&self.journald_units));
        problems
    }
}

impl LogsConfig {
    /// All problems of this configuration (the same as [`Validate::validate`]).
    pub fn validate(&self) -> Vec<Problem> {
        Validate::validate(self)
    }
}

/// Compiles one `exclude` pattern the way the source matches it: `*` stops at `/`,
/// as it does in `files`.
pub(super) fn compile_exclude(pattern: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = LogsConfig::default();
        assert!(c.validate().is_empty());
        assert!(c.enabled);
        assert_eq!(c.files, vec!["/var/log/*.log"]);
        assert_eq!(c.read_from, ReadFrom::Beginning);
        assert_eq!(c.max_line_bytes, 102_400);
        assert_eq!(c.fingerprint_bytes, 256);
    }

    #[test]
    fn parses_from_toml_and_rejects_unknown_keys() {
        let c: LogsConfig =
            toml::from_str("files = [\"/tmp/*.log\"]\nexclude = [\"*.gz\"]\nread_from = \"end\"\n")
                .unwrap();
        assert_eq!(c.read_from, ReadFrom::End);
        assert_eq!(c.exclude, vec!["*.gz"]);
        assert_eq!(c.rescan_interval_ms, 1000);
        assert!(toml::from_str::<LogsConfig>("filez = []").is_err());
        assert!(toml::from_str::<LogsConfig>("read_from = \"middle\"").is_err());
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let c = LogsConfig {
            files: vec!["relative/*.log".into(), "/bad/[".into()],
            exclude: vec!["[".into()],
            max_line_bytes: 0,
            fingerprint_bytes: 0,
            max_open_files: 0,
            rescan_interval_ms: 0,
            ..LogsConfig::default()
        };
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            vec![
                "collectors.logs.files",
                "collectors.logs.files",
                "collectors.logs.exclude",
                "collectors.logs.max_line_bytes",
                "collectors.logs.fingerprint_bytes",
                "collectors.logs.max_open_files",
                "collectors.logs.rescan_interval_ms",
            ]
        );
    }

    #[test]
    fn multiline_patterns_are_checked() {
        let c: LogsConfig = toml::from_str(
            "[multiline]\nstart_pattern = '^\\d{4}-'\ncontinuation_pattern = '(unclosed'\nmax_lines = 0\n",
        )
        .unwrap();
        let problems: Vec<(String, String)> = c
            .validate()
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            problems[0].0,
            "collectors.logs.multiline.continuation_pattern"
        );
        assert!(problems[0].1.contains("regular expression"), "{problems:?}");
        assert_eq!(problems[1].0, "collectors.logs.multiline.max_lines");
        assert!(toml::from_str::<LogsConfig>("[multiline]\npattern = 'x'").is_err());
    }

    #[test]
    fn disabled_source_needs_no_patterns() {
        let c = LogsConfig {
            enabled: false,
            files: vec![],
            ..LogsConfig::default()
        };
        assert!(c.validate().is_empty());
    }
}
