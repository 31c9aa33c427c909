//! The `[collectors.logs.journald]` table, and `[collectors.logs] journald_units`
//! (which DESIGN.md places in the parent table). Parsed and validated in every build,
//! so that a build without the `journald` feature can say why it refuses a
//! configuration that enables the source.

use std::path::PathBuf;

use monitoring_common::Severity;
use monitoring_common::config::Problem;
use serde::{Deserialize, Serialize};

use crate::collectors::logs::ReadFrom;
use crate::collectors::logs::filter::FilterConfig;

/// Longest journal field name (`JOURNAL_FIELD_NAME_MAX` would be 64 in systemd).
const MAX_FIELD_NAME: usize = 64;

/// Configuration of the journald source (`[collectors.logs.journald]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournaldConfig {
    /// Whether the journal is read. Needs an agent built with the `journald` feature.
    /// Default `false`.
    pub enabled: bool,
    /// A journal directory (every `*.journal` file in it) or a single journal file
    /// to read instead of the system journal. Events then carry this path as their
    /// `source` instead of `"journald"`. Default: none (the system journal, every
    /// file of the local machine's system and user journals).
    pub path: Option<PathBuf>,
    /// Only entries of this priority or a more severe one: `"emerg"`, `"alert"`,
    /// `"crit"`, `"err"`, `"warning"`, `"notice"`, `"info"`, `"debug"` (the long
    /// names `"emergency"`, `"critical"`, `"error"` and `"0"`..`"7"` work too).
    /// Entries without a `PRIORITY` field are then left out, as `journalctl -p` does.
    /// Default: none (every priority).
    pub max_priority: Option<String>,
    /// Journal matches, `"FIELD=value"`, combined as `sd_journal_add_match` does:
    /// matches on different fields must all hold, several matches on one field are
    /// alternatives. Combined (AND) with `journald_units` and `max_priority`.
    /// Default `[]`.
    pub matches: Vec<String>,
    /// Where to start the first time (when `<state dir>/journald.json` does not exist
    /// yet): `"end"` (only entries written from now on) or `"beginning"` (the oldest
    /// entry kept). Later starts resume after the last acknowledged entry.
    /// Default `"end"`.
    pub read_from: ReadFrom,
    /// `[collectors.logs.journald.filter]`: include and exclude regular expressions
    /// and a minimum severity, applied to each entry's `MESSAGE` after the journal
    /// matches (the severity is read from the message text; `max_priority` is the
    /// way to select by the entry's own priority). Default: every entry ships.
    pub filter: FilterConfig,
}

impl Default for JournaldConfig {
    fn default() -> Self {
        JournaldConfig {
            enabled: false,
            path: None,
            max_priority: None,
            matches: Vec::new(),
            read_from: ReadFrom::End,
            filter: FilterConfig::default(),
        }
    }
}

/// One parsed `"FIELD=value"` match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalMatch {
    /// The field name (`_SYSTEMD_UNIT`).
    pub field: String,
    /// The value the field must have (may be empty).
    pub value: String,
}

impl JournaldConfig {
    /// Every problem of this table and of `journald_units`, with their keys.
    pub fn validate(&self, units: &[String]) -> Vec<Problem> {
        let key = |k: &str| format!("collectors.logs.journald.{k}");
        let mut problems = Vec::new();
        if self.enabled && !cfg!(feature = "journald") {
            problems.push(Problem::new(
                key("enabled"),
                "the agent was built without the `journald` feature; rebuild it with \
                 `--features journald` or set enabled = false",
            ));
        }
        if let Some(path) = &self.path
            && path.as_os_str().is_empty()
        {
            problems.push(Problem::new(
                key("path"),
                "must not be empty (leave it out to read the system journal)",
            ));
        }
        problems.extend(self.filter.validate("collectors.logs.journald.filter"));
        if let Some(Err(message)) = self.max_priority.as_deref().map(parse_priority) {
            problems.push(Problem::new(key("max_priority"), message));
        }
        for m in &self.matches {
            if let Err(message) = parse_match(m) {
                problems.push(Problem::new(key("matches"), message));
            }
        }
        for unit in units {
            if unit.trim().is_empty() || unit.contains(['\n', '=']) {
                problems.push(Problem::new(
                    "collectors.logs.journald_units",
                    format!("{unit:?} is not a unit name (e.g. \"nginx.service\")"),
                ));
            }
        }
        problems
    }

    /// The priority filter, if any (validated before: an invalid one is ignored).
    pub fn max_priority(&self) -> Option<Severity> {
        self.max_priority
            .as_deref()
            .and_then(|p| parse_priority(p).ok())
    }

    /// The parsed `matches` (validated before: invalid ones are left out).
    pub fn parsed_matches(&self) -> Vec<JournalMatch> {
        self.matches
            .iter()
            .filter_map(|m| parse_match(m).ok())
            .collect()
    }
}

/// The `_SYSTEMD_UNIT` value for a `journald_units` entry: a name without a unit
/// type suffix means a service, as for `journalctl -u`.
pub fn unit_name(unit: &str) -> String {
    let unit = unit.trim();
    if unit.contains('.') {
        unit.to_string()
    } else {
        format!("{unit}.service")
    }
}

/// A journal priority: the syslog names and numbers 0 to 7 (not `trace`, which
/// journal entries cannot have).
fn parse_priority(text: &str) -> Result<Severity, String> {
    match text.parse::<Severity>() {
        Ok(Severity::Trace) | Err(_) => Err(format!(
            "{text:?} is not a journal priority (expected emerg, alert, crit, err, warning, \
             notice, info, debug or 0 to 7)"
        )),
        Ok(severity) => Ok(severity),
    }
}

/// `FIELD=value` with a field name as the journal allows it: upper-case letters,
/// digits and underscores, not starting with a digit, at most 64 bytes.
fn parse_match(text: &str) -> Result<JournalMatch, String> {
    let Some((field, value)) = text.split_once('=') else {
        return Err(format!("{text:?} is not of the form \"FIELD=value\""));
    };
    let valid_name = !field.is_empty()
        && field.len() <= MAX_FIELD_NAME
        && !field.starts_with(|c: char| c.is_ascii_digit())
        && field
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !valid_name {
        return Err(format!(
            "{text:?}: {field:?} is not a journal field name (upper-case letters, digits and \
             underscores, not starting with a digit, at most {MAX_FIELD_NAME} bytes)"
        ));
    }
    Ok(JournalMatch {
        field: field.to_string(),
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_off_from_the_end_and_valid() {
        let c = JournaldConfig::default();
        assert!(!c.enabled);
        assert_eq!(c.read_from, ReadFrom::End);
        assert_eq!(c.path, None);
        assert_eq!(c.max_priority(), None);
        assert!(c.validate(&[]).is_empty());
        let parsed: JournaldConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, c);
    }

    #[test]
    fn parses_every_key_and_rejects_unknown_ones() {
        let c: JournaldConfig = toml::from_str(
            "enabled = true\npath = \"/var/log/journal\"\nmax_priority = \"warning\"\n\
             matches = [\"_TRANSPORT=syslog\", \"SYSLOG_IDENTIFIER=\"]\nread_from = \"beginning\"\n",
        )
        .unwrap();
        assert_eq!(c.max_priority(), Some(Severity::Warning));
        assert_eq!(c.read_from, ReadFrom::Beginning);
        assert_eq!(
            c.parsed_matches(),
            vec![
                JournalMatch {
                    field: "_TRANSPORT".into(),
                    value: "syslog".into()
                },
                JournalMatch {
                    field: "SYSLOG_IDENTIFIER".into(),
                    value: String::new()
                },
            ]
        );
        assert!(toml::from_str::<JournaldConfig>("unit = \"x\"").is_err());
    }

    #[test]
    fn priorities_take_syslog_names_and_numbers() {
        for (text, severity) in [
            ("emerg", Severity::Emergency),
            ("crit", Severity::Critical),
            ("err", Severity::Error),
            ("error", Severity::Error),
            ("4", Severity::Warning),
            ("debug", Severity::Debug),
        ] {
            assert_eq!(parse_priority(text), Ok(severity), "{text}");
        }
        for bad in ["trace", "8", "loud", ""] {
            assert!(parse_priority(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let c = JournaldConfig {
            path: Some(PathBuf::new()),
            max_priority: Some("loud".into()),
            matches: vec![
                "novalue".into(),
                "lower=x".into(),
                "1ABC=x".into(),
                "OK=1".into(),
            ],
            ..JournaldConfig::default()
        };
        let problems = c.validate(&["nginx".into(), " ".into()]);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "collectors.logs.journald.path",
                "collectors.logs.journald.max_priority",
                "collectors.logs.journald.matches",
                "collectors.logs.journald.matches",
                "collectors.logs.journald.matches",
                "collectors.logs.journald_units",
            ],
            "{problems:?}"
        );
        assert!(problems[2].message.contains("FIELD=value"), "{problems:?}");
    }

    #[test]
    fn enabling_needs_the_feature() {
        let c = JournaldConfig {
            enabled: true,
            ..JournaldConfig::default()
        };
        let problems = c.validate(&[]);
        if cfg!(feature = "journald") {
            assert!(problems.is_empty(), "{problems:?}");
        } else {
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].key, "collectors.logs.journald.enabled");
            assert!(
                problems[0]
                    .message
                    .contains("built without the `journald` feature"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn unit_names_default_to_services() {
        assert_eq!(unit_name("nginx"), "nginx.service");
        assert_eq!(unit_name("cron.timer"), "cron.timer");
        assert_eq!(unit_name("user@1000.service"), "user@1000.service");
    }
}
