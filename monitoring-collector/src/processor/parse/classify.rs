//! Severity from a level field, and from the text when there is none.
//!
//! A format that states a level (a JSON or logfmt `level`, a syslog PRI) is
//! believed; otherwise [`monitoring_common::severity::detect`] reads the line, the
//! same function the agent's `min_severity` filter uses, so both agree.

use monitoring_common::Severity;

/// The severity a level name means: the canonical names and the usual variants
/// (`warn`, `err`, `crit`, `fatal`, `panic`, Java's `SEVERE`, `FINE`...).
pub fn level_name(name: &str) -> Option<Severity> {
    if let Ok(severity) = name.parse::<Severity>() {
        return Some(severity);
    }
    match name.trim().to_ascii_lowercase().as_str() {
        "severe" => Some(Severity::Error),
        "fine" | "config" => Some(Severity::Debug),
        "finer" | "finest" | "verbose" => Some(Severity::Trace),
        "informational" => Some(Severity::Info),
        _ => None,
    }
}

/// The severity of a numeric level: syslog codes 0-7, or bunyan/pino's 10-60.
pub fn level_number(n: i64) -> Option<Severity> {
    match n {
        0..=7 => Severity::from_code(u8::try_from(n).ok()?),
        10 => Some(Severity::Trace),
        20 => Some(Severity::Debug),
        30 => Some(Severity::Info),
        40 => Some(Severity::Warning),
        50 => Some(Severity::Error),
        60 => Some(Severity::Critical),
        _ => None,
    }
}

/// The severity of an event: the stated `level`, else what `message` suggests.
pub fn classify(level: Option<Severity>, message: &str) -> Option<Severity> {
    level.or_else(|| monitoring_common::severity::detect(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_fallback() {
        let names = [
            ("WARN", Some(Severity::Warning)),
            ("Error", Some(Severity::Error)),
            ("fatal", Some(Severity::Critical)),
            ("SEVERE", Some(Severity::Error)),
            ("finest", Some(Severity::Trace)),
            ("loud", None),
            ("", None),
        ];
        for (name, want) in names {
            assert_eq!(level_name(name), want, "{name}");
        }
        assert_eq!(level_number(3), Some(Severity::Error));
        assert_eq!(level_number(30), Some(Severity::Info));
        assert_eq!(level_number(60), Some(Severity::Critical));
        assert_eq!(level_number(35), None);
        assert_eq!(level_number(-1), None);
        assert_eq!(
            classify(Some(Severity::Info), "disk failed"),
            Some(Severity::Info)
        );
        assert_eq!(classify(None, "disk failed"), Some(Severity::Error));
        assert_eq!(classify(None, "all good"), None);
    }
}
