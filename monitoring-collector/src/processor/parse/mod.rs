//! The parse step: structure read out of log lines, and their severity.
//!
//! [`parse`] looks at the first bytes of a line to pick the one format worth trying
//! (`{` JSON, `<` syslog with PRI, a month name an rsyslog file line, a digit or `[`
//! one of the timestamp formats, `=` somewhere logfmt), so a line costs one
//! attempt or two, never one per format. Each format is a module:
//! [`json`], [`logfmt`], [`syslog`], [`timestamp`]; [`classify`] gives the severity.
//!
//! Parsing never fails an event: a line that matches nothing is [`Format::None`] and
//! keeps its text. Work per line is bounded: lines longer than [`MAX_PARSE_BYTES`]
//! are only looked at for a leading timestamp, at most [`MAX_FIELDS`] fields are
//! added, JSON is flattened to [`json::MAX_DEPTH`] levels.
//!
//! Only a JSON line's message is replaced (by its `msg`, `message` or `log` string,
//! the rest of the object being in the fields), and only when every field could be
//! kept: other formats are readable as they are, so they keep their text and gain
//! fields.

pub mod classify;
pub mod json;
pub mod logfmt;
pub mod syslog;
pub mod timestamp;

use std::collections::btree_map::Entry;

use monitoring_common::{LogEvent, Severity, Value};

/// Longest line parsed as JSON or logfmt; longer ones ship as text (with a leading
/// timestamp still read).
pub const MAX_PARSE_BYTES: usize = 16 * 1024;
/// Most fields one line may add.
pub const MAX_FIELDS: usize = 64;
/// Longest field name kept; longer names are dropped with their value.
pub const MAX_KEY_BYTES: usize = 128;

/// What a line was parsed as (label `format` of `monitoring_processor_parsed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// A JSON object.
    Json,
    /// `key=value` pairs.
    Logfmt,
    /// Syslog RFC 5424.
    Rfc5424,
    /// Syslog RFC 3164, with or without `<PRI>`.
    Rfc3164,
    /// Plain text after a recognised timestamp.
    Timestamp,
    /// Nothing recognised: plain text.
    None,
}

impl Format {
    /// Every format, for registering each metric series from the start.
    pub const ALL: [Format; 6] = [
        Format::Json,
        Format::Logfmt,
        Format::Rfc5424,
        Format::Rfc3164,
        Format::Timestamp,
        Format::None,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Logfmt => "logfmt",
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
            Format::Timestamp => "timestamp",
            Format::None => "none",
        }
    }
}

/// What parsing found in a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The format recognised.
    pub format: Format,
    /// Fields found, at most [`MAX_FIELDS`], in line order.
    pub fields: Vec<(String, Value)>,
    /// The message to store instead of the line (JSON only).
    pub message: Option<String>,
    /// The level the line states, if any.
    pub level: Option<Severity>,
    /// Some fields were dropped (the caps): the line must then keep its text.
    pub truncated: bool,
}

impl Parsed {
    fn new(format: Format) -> Parsed {
        Parsed {
            format,
            fields: Vec::new(),
            message: None,
            level: None,
            truncated: false,
        }
    }

    /// Adds a field unless the cap is reached or the name is too long.
    fn field(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        if !self.is_full() && key.len() <= MAX_KEY_BYTES {
            self.fields.push((key, value));
        } else {
            self.truncated = true;
        }
    }

    fn is_full(&self) -> bool {
        self.fields.len() >= MAX_FIELDS
    }
}

/// Parses `line`; `event_ns` (the event's own time) supplies years that lines omit.
pub fn parse(line: &str, event_ns: i64) -> Parsed {
    structured(line, event_ns)
        .or_else(|| {
            let (stamp, _) = timestamp::at_start(line, event_ns)?;
            let mut parsed = Parsed::new(Format::Timestamp);
            parsed.field("log_time", Value::Str(stamp.to_rfc3339()));
            Some(parsed)
        })
        .unwrap_or_else(|| Parsed::new(Format::None))
}

/// The structured formats, chosen by the first byte.
fn structured(line: &str, event_ns: i64) -> Option<Parsed> {
    let small = line.len() <= MAX_PARSE_BYTES;
    match line.as_bytes().first()? {
        b'{' if small => json::parse(line),
        b'<' => syslog::with_pri(line, event_ns),
        b'A'..=b'Z' if timestamp::month(line.as_bytes()).is_some() => {
            syslog::rfc3164(line, event_ns)
        }
        _ if small && line.as_bytes().contains(&b'=') => logfmt::parse(line),
        _ => None,
    }
}

/// Parses a log event in place and gives it a severity if it has none. Fields the
/// event already has (set by the agent) win over parsed ones. Returns the format.
pub fn apply(log: &mut LogEvent, event_ns: i64) -> Format {
    let parsed = parse(&log.message, event_ns);
    let format = parsed.format;
    let mut complete = !parsed.truncated;
    for (key, value) in parsed.fields {
        match log.fields.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
            Entry::Occupied(_) => complete = false,
        }
    }
    // The line is replaced by its message only when every other part of it is in
    // the fields, so that nothing it said is lost.
    if let Some(message) = parsed.message
        && complete
    {
        log.message = message;
    }
    if log.severity.is_none() {
        log.severity = classify::classify(parsed.level, &log.message);
    }
    format
}

#[cfg(test)]
mod tests;
