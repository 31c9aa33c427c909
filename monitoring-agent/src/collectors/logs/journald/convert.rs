//! From a journal entry's fields to a log [`Event`].
//!
//! | journal field       | event                                  |
//! |---------------------|----------------------------------------|
//! | `MESSAGE`           | `message` (invalid UTF-8 replaced)     |
//! | `PRIORITY` (0..7)   | `severity`, and field `priority` (int) |
//! | realtime timestamp  | `timestamp_ns`                         |
//! | `_SYSTEMD_UNIT`     | field `unit`                           |
//! | `_PID`              | field `pid` (int)                      |
//! | `_COMM`             | field `comm`                           |
//! | `_HOSTNAME`         | field `hostname`                       |
//! | `_BOOT_ID`          | field `boot_id`                        |
//! | `SYSLOG_IDENTIFIER` | field `syslog_identifier`              |
//! | `_TRANSPORT`        | field `transport`                      |
//!
//! Absent journal fields give absent event fields; a `PRIORITY` or `_PID` that is
//! not a number is kept as a string field and gives no severity. Other journal
//! fields are not shipped.

use monitoring_common::{Event, EventKind, Severity, Value};

/// Journal fields kept as string fields, with their event field names.
const STRING_FIELDS: [(&[u8], &str); 6] = [
    (b"_SYSTEMD_UNIT", "unit"),
    (b"_COMM", "comm"),
    (b"_HOSTNAME", "hostname"),
    (b"_BOOT_ID", "boot_id"),
    (b"SYSLOG_IDENTIFIER", "syslog_identifier"),
    (b"_TRANSPORT", "transport"),
];

/// The fields of one entry the source ships, copied out of the journal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// `MESSAGE`, raw bytes.
    pub message: Option<Vec<u8>>,
    /// `PRIORITY`, raw bytes.
    pub priority: Option<Vec<u8>>,
    /// `_PID`, raw bytes.
    pub pid: Option<Vec<u8>>,
    /// The [`STRING_FIELDS`] present, as (event field name, raw value).
    pub strings: Vec<(&'static str, Vec<u8>)>,
    /// The entry's realtime timestamp, microseconds since the epoch.
    pub realtime_usec: u64,
}

impl RawEntry {
    /// Keeps `value` if `name` is a field the source ships; a later value of the same
    /// field (a field given twice in an entry) replaces the earlier one.
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        match name {
            b"MESSAGE" => self.message = Some(value.to_vec()),
            b"PRIORITY" => self.priority = Some(value.to_vec()),
            b"_PID" => self.pid = Some(value.to_vec()),
            _ => {
                if let Some((_, event_name)) = STRING_FIELDS.iter().find(|(n, _)| *n == name) {
                    self.strings.retain(|(n, _)| n != event_name);
                    self.strings.push((event_name, value.to_vec()));
                }
            }
        }
    }
}

/// The event for `entry`, with `source` as its source.
pub fn to_event(entry: &RawEntry, source: &str) -> Event {
    let message = entry
        .message
        .as_deref()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default();
    let timestamp_ns = i64::try_from(entry.realtime_usec)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    let mut event = Event::log(timestamp_ns, source, message);
    let EventKind::Log(log) = &mut event.kind else {
        return event;
    };
    if let Some(raw) = &entry.priority {
        match number(raw) {
            Some(p) => {
                log.severity = u8::try_from(p)
                    .ok()
                    .filter(|&code| code <= Severity::Debug.code())
                    .and_then(Severity::from_code);
                log.fields.insert("priority".into(), Value::Int(p));
            }
            None => {
                log.fields.insert("priority".into(), text(raw));
            }
        }
    }
    if let Some(raw) = &entry.pid {
        let value = number(raw).map_or_else(|| text(raw), Value::Int);
        log.fields.insert("pid".into(), value);
    }
    for (name, raw) in &entry.strings {
        log.fields.insert((*name).to_string(), text(raw));
    }
    event
}

fn number(raw: &[u8]) -> Option<i64> {
    std::str::from_utf8(raw).ok()?.trim().parse().ok()
}

fn text(raw: &[u8]) -> Value {
    Value::Str(String::from_utf8_lossy(raw).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &[u8])]) -> RawEntry {
        let mut e = RawEntry {
            realtime_usec: 1_700_000_000_123_456,
            ..RawEntry::default()
        };
        for (name, value) in fields {
            e.add(name.as_bytes(), value);
        }
        e
    }

    #[test]
    fn every_documented_field_is_mapped() {
        let e = entry(&[
            ("MESSAGE", b"disk full\non /var"),
            ("PRIORITY", b"3"),
            ("_PID", b"42"),
            ("_SYSTEMD_UNIT", b"app.service"),
            ("_COMM", b"app"),
            ("_HOSTNAME", b"web-1"),
            ("_BOOT_ID", b"0123"),
            ("SYSLOG_IDENTIFIER", b"app"),
            ("_TRANSPORT", b"journal"),
            ("_UID", b"0"),
        ]);
        let event = to_event(&e, "journald");
        assert_eq!(event.source, "journald");
        assert_eq!(event.timestamp_ns, 1_700_000_000_123_456_000);
        let EventKind::Log(log) = event.kind else {
            panic!("not a log")
        };
        assert_eq!(log.message, "disk full\non /var");
        assert_eq!(log.severity, Some(Severity::Error));
        let f = &log.fields;
        assert_eq!(f["priority"], Value::Int(3));
        assert_eq!(f["pid"], Value::Int(42));
        assert_eq!(f["unit"], Value::Str("app.service".into()));
        assert_eq!(f["comm"], Value::Str("app".into()));
        assert_eq!(f["hostname"], Value::Str("web-1".into()));
        assert_eq!(f["boot_id"], Value::Str("0123".into()));
        assert_eq!(f["syslog_identifier"], Value::Str("app".into()));
        assert_eq!(f["transport"], Value::Str("journal".into()));
        assert_eq!(f.len(), 8, "{f:?}");
    }

    #[test]
    fn binary_messages_and_odd_numbers_survive() {
        let e = entry(&[
            ("MESSAGE", b"bad \xff byte"),
            ("PRIORITY", b"9"),
            ("_PID", b"x"),
        ]);
        let EventKind::Log(log) = to_event(&e, "/j").kind else {
            panic!("not a log")
        };
        assert_eq!(log.message, "bad \u{fffd} byte");
        assert_eq!(log.severity, None);
        assert_eq!(log.fields["priority"], Value::Int(9));
        assert_eq!(log.fields["pid"], Value::Str("x".into()));

        let EventKind::Log(log) = to_event(&entry(&[]), "j").kind else {
            panic!("not a log")
        };
        assert_eq!(log.message, "");
        assert!(log.fields.is_empty());
    }
}
