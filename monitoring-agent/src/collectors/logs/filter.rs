//! Which log events a source ships: include and exclude regular expressions and a
//! minimum severity (`[collectors.logs.filter]`), so that a host can ship only its
//! errors.
//!
//! The order is include, then exclude, then severity. With `min_severity` set, the
//! severity is read from the line ([`monitoring_common::severity::detect`]) and kept
//! on the event; a line whose severity cannot be told is not shipped, since nothing
//! says it reaches the minimum. A filtered event is not lost: it is counted by
//! reason, and its position is acknowledged like a shipped one's, so that it is not
//! read again after a restart.

use monitoring_common::config::Problem;
use monitoring_common::event::Severity;
use monitoring_common::severity::detect;
use regex::RegexSet;
use serde::{Deserialize, Serialize};

/// `[collectors.logs.filter]`. Default: everything ships.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Regular expressions; when any is given, only events matching at least one
    /// ship. Default: none (all).
    pub include: Vec<String>,
    /// Regular expressions; events matching any do not ship. Default: none.
    pub exclude: Vec<String>,
    /// The least severe level that ships: `emergency`, `alert`, `critical`, `error`,
    /// `warning`, `notice`, `info`, `debug` or `trace` (also `emerg`, `crit`,
    /// `fatal`, `panic`, `err`, `warn`). Default: none (all).
    pub min_severity: Option<String>,
}

/// Why an event did not ship; the `reason` label of the filtered counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterReason {
    /// It matched no `include` expression.
    NotIncluded,
    /// It matched an `exclude` expression.
    Excluded,
    /// Its severity is below `min_severity`, or could not be told.
    Severity,
}

impl FilterReason {
    /// Every reason, so that each series exists from the start.
    pub const ALL: [FilterReason; 3] = [
        FilterReason::NotIncluded,
        FilterReason::Excluded,
        FilterReason::Severity,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterReason::NotIncluded => "not_included",
            FilterReason::Excluded => "excluded",
            FilterReason::Severity => "severity",
        }
    }
}

/// What happens to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It ships, with the severity read from it (when `min_severity` asked for it).
    Ship(Option<Severity>),
    /// It does not.
    Filter(FilterReason),
}

/// A compiled [`FilterConfig`].
#[derive(Debug, Clone, Default)]
pub struct LineFilter {
    include: Option<RegexSet>,
    exclude: Option<RegexSet>,
    min_severity: Option<Severity>,
}

impl FilterConfig {
    /// Problems with this table; `prefix` is its dotted key.
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        match LineFilter::new(self) {
            Ok(_) => Vec::new(),
            Err((key, message)) => vec![Problem::new(format!("{prefix}.{key}"), message)],
        }
    }
}

impl LineFilter {
    /// Compiles `config`; on error, the key at fault (`include[2]`) and why.
    pub fn new(config: &FilterConfig) -> Result<LineFilter, (String, String)> {
        let set = |key: &str, patterns: &[String]| -> Result<Option<RegexSet>, (String, String)> {
            if patterns.is_empty() {
                return Ok(None);
            }
            for (i, p) in patterns.iter().enumerate() {
                if let Err(e) = regex::Regex::new(p) {
                    return Err((
                        format!("{key}[{i}]"),
                        format!("is not a valid regular expression: {e}"),
                    ));
                }
            }
            RegexSet::new(patterns)
                .map(Some)
                .map_err(|e| (key.to_owned(), e.to_string()))
        };
        let min_severity = match &config.min_severity {
            Some(name) => Some(
                name.parse::<Severity>()
                    .map_err(|e| ("min_severity".to_owned(), e.to_string()))?,
            ),
            None => None,
        };
        Ok(LineFilter {
            include: set("include", &config.include)?,
            exclude: set("exclude", &config.exclude)?,
            min_severity,
        })
    }

    /// Whether every event ships unchanged (no work to do per event).
    pub fn is_pass_all(&self) -> bool {
        self.include.is_none() && self.exclude.is_none() && self.min_severity.is_none()
    }

    /// The verdict on one event's message.
    pub fn check(&self, message: &str) -> Verdict {
        if let Some(include) = &self.include
            && !include.is_match(message)
        {
            return Verdict::Filter(FilterReason::NotIncluded);
        }
        if let Some(exclude) = &self.exclude
            && exclude.is_match(message)
        {
            return Verdict::Filter(FilterReason::Excluded);
        }
        let Some(min) = self.min_severity else {
            return Verdict::Ship(None);
        };
        // Lower codes are more severe.
        match detect(message) {
            Some(severity) if severity <= min => Verdict::Ship(Some(severity)),
            _ => Verdict::Filter(FilterReason::Severity),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn filter(toml_text: &str) -> LineFilter {
        LineFilter::new(&toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[test]
    fn include_then_exclude_then_severity() {
        let f =
            filter("include = ['sshd', 'kernel']\nexclude = ['Accepted']\nmin_severity = 'warn'");
        assert!(!f.is_pass_all());
        assert_eq!(
            f.check("cron: job done"),
            Verdict::Filter(FilterReason::NotIncluded)
        );
        assert_eq!(
            f.check("sshd: Accepted password"),
            Verdict::Filter(FilterReason::Excluded)
        );
        assert_eq!(
            f.check("sshd: INFO session opened"),
            Verdict::Filter(FilterReason::Severity)
        );
        assert_eq!(
            f.check("sshd: session opened"),
            Verdict::Filter(FilterReason::Severity)
        );
        assert_eq!(
            f.check("sshd: authentication failure"),
            Verdict::Ship(Some(Severity::Error))
        );
        assert_eq!(
            f.check("kernel: WARN low memory"),
            Verdict::Ship(Some(Severity::Warning))
        );
        assert!(filter("").is_pass_all());
        assert_eq!(filter("").check("anything"), Verdict::Ship(None));
        assert_eq!(
            filter("exclude = ['^#']").check("# comment"),
            Verdict::Filter(FilterReason::Excluded)
        );
    }

    #[test]
    fn bad_patterns_and_severities_name_their_key() {
        let c: FilterConfig = toml::from_str("include = ['ok', '(unclosed']").unwrap();
        let p = c.validate("collectors.logs.filter");
        assert_eq!(p[0].key, "collectors.logs.filter.include[1]");
        let c: FilterConfig = toml::from_str("min_severity = 'loud'").unwrap();
        assert_eq!(c.validate("x")[0].key, "x.min_severity");
        assert!(toml::from_str::<FilterConfig>("severity = 'err'").is_err());
    }
}
