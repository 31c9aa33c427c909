//! Syslog lines: RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`) and
//! RFC 3164 (`<PRI>Mmm dd hh:mm:ss host tag[pid]: msg`), the latter also without
//! `<PRI>`, as rsyslog writes files such as `/var/log/syslog`.
//!
//! Fields: `log_time`, `hostname`, `appname`, `procid`, `msgid`, `facility`, and
//! structured data as `sd.<id>.<param>`. The PRI's severity is the line's level.

use monitoring_common::{Severity, Value};

use super::{Format, Parsed, timestamp};

/// Facility names by code (RFC 5424 table 1).
const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Longest tag (APP-NAME) taken from an RFC 3164 line; RFC 5424 allows 48.
const MAX_TAG: usize = 48;

/// `<PRI>` at the start: (facility, severity, bytes taken).
fn pri(b: &[u8]) -> Option<(usize, u8, usize)> {
    if b.first() != Some(&b'<') {
        return None;
    }
    let close = b.iter().take(5).position(|&c| c == b'>')?;
    let digits = &b[1..close];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0usize, |acc, &c| acc * 10 + usize::from(c - b'0'));
    if value > 191 {
        return None;
    }
    Some((value / 8, (value % 8) as u8, close + 1))
}

/// Parses a line starting with `<PRI>`.
pub fn with_pri(line: &str, event_ns: i64) -> Option<Parsed> {
    let (facility, severity, at) = pri(line.as_bytes())?;
    let rest = &line[at..];
    let mut parsed = if let Some(after_version) = rest.strip_prefix("1 ") {
        rfc5424(after_version)?
    } else {
        rfc3164(rest, event_ns)?
    };
    parsed.field("facility", Value::Str(FACILITIES[facility].to_string()));
    parsed.level = Severity::from_code(severity);
    Some(parsed)
}

/// Splits the next space-separated token off `s`.
fn token(s: &str) -> Option<(&str, &str)> {
    let end = s.find(' ').unwrap_or(s.len());
    let (tok, rest) = s.split_at(end);
    (!tok.is_empty()).then_some((tok, rest.strip_prefix(' ').unwrap_or(rest)))
}

fn rfc5424(s: &str) -> Option<Parsed> {
    let mut parsed = Parsed::new(Format::Rfc5424);
    let (time, s) = token(s)?;
    if time != "-" {
        let (stamp, used) = timestamp::iso(time.as_bytes())?;
        if used != time.len() {
            return None;
        }
        parsed.field("log_time", Value::Str(stamp.to_rfc3339()));
    }
    let (host, s) = token(s)?;
    let (app, s) = token(s)?;
    let (procid, s) = token(s)?;
    let (msgid, s) = token(s)?;
    for (key, value) in [
        ("hostname", host),
        ("appname", app),
        ("procid", procid),
        ("msgid", msgid),
    ] {
        if value != "-" {
            parsed.field(key, Value::Str(value.to_string()));
        }
    }
    if let Some(rest) = s.strip_prefix('-') {
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
    } else if s.starts_with('[') {
        structured_data(s, &mut parsed)?;
    } else if !s.is_empty() {
        return None;
    }
    Some(parsed)
}

/// `[id k="v" k2="v2"][id2 ...]`: each parameter becomes `sd.id.k`. Returns the
/// text after the last element.
fn structured_data<'a>(mut s: &'a str, parsed: &mut Parsed) -> Option<&'a str> {
    while let Some(element) = s.strip_prefix('[') {
        let id_end = element.find([' ', ']'])?;
        let id = &element[..id_end];
        let mut rest = &element[id_end..];
        loop {
            rest = rest.trim_start_matches(' ');
            if let Some(after) = rest.strip_prefix(']') {
                s = after;
                break;
            }
            let eq = rest.find('=')?;
            let name = &rest[..eq];
            let quoted = rest[eq + 1..].strip_prefix('"')?;
            let (value, after) = quoted_value(quoted)?;
            parsed.field(format!("sd.{id}.{name}"), Value::Str(value));
            rest = after;
        }
    }
    Some(s)
}

/// A value after its opening quote, with `\"`, `\\` and `\]` unescaped; the text
/// after the closing quote.
fn quoted_value(s: &str) -> Option<(String, &str)> {
    // Most values have no escapes: one scan and one copy.
    if let Some(end) = s.find(['"', '\\'])
        && s.as_bytes()[end] == b'"'
    {
        return Some((s[..end].to_string(), &s[end + 1..]));
    }
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\' | ']'))) => value.push(e),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return None,
            },
            c => value.push(c),
        }
    }
    None
}

/// `Mmm dd hh:mm:ss host tag[pid]: msg` (after any `<PRI>`).
pub fn rfc3164(s: &str, event_ns: i64) -> Option<Parsed> {
    let (stamp, used) = timestamp::syslog(s.as_bytes(), event_ns)?;
    let rest = s[used..].strip_prefix(' ')?;
    let (host, rest) = token(rest)?;
    let mut parsed = Parsed::new(Format::Rfc3164);
    parsed.field("log_time", Value::Str(stamp.to_rfc3339()));
    parsed.field("hostname", Value::Str(host.to_string()));
    // The tag ends at `[`, `:` or a space; `sshd(pam_unix)[19939]:` is app
    // `sshd(pam_unix)`, pid 19939.
    let tag_end = rest.find(['[', ':', ' ']).unwrap_or(rest.len());
    let tag = &rest[..tag_end];
    if tag.is_empty() || tag.len() > MAX_TAG {
        return Some(parsed);
    }
    parsed.field("appname", Value::Str(tag.to_string()));
    if let Some(pid) = rest[tag_end..].strip_prefix('[')
        && let Some(close) = pid.find(']')
        && close > 0
        && close <= 20
    {
        parsed.field("procid", Value::Str(pid[..close].to_string()));
    }
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const EVENT_NS: i64 = 1_795_996_800 * 1_000_000_000;

    fn fields(p: &Parsed) -> BTreeMap<&str, String> {
        p.fields
            .iter()
            .map(|(k, v)| {
                let Value::Str(s) = v else {
                    panic!("{k}: {v:?}")
                };
                (k.as_str(), s.clone())
            })
            .collect()
    }

    #[test]
    fn rfc5424_with_and_without_structured_data() {
        let line = r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Appl\"ication"][meta seq="1"] An application event"#;
        let p = with_pri(line, EVENT_NS).expect("parses");
        assert_eq!(p.format, Format::Rfc5424);
        assert_eq!(p.level, Some(Severity::Notice));
        let f = fields(&p);
        assert_eq!(f["log_time"], "2003-10-11T22:14:15.003Z");
        assert_eq!(f["hostname"], "mymachine.example.com");
        assert_eq!(f["appname"], "evntslog");
        assert!(!f.contains_key("procid"));
        assert_eq!(f["msgid"], "ID47");
        assert_eq!(f["facility"], "local4");
        assert_eq!(f["sd.exampleSDID@32473.iut"], "3");
        assert_eq!(f["sd.exampleSDID@32473.eventSource"], "Appl\"ication");
        assert_eq!(f["sd.meta.seq"], "1");

        let p = with_pri("<34>1 - host su 77 - - 'su root' failed", EVENT_NS).expect("parses");
        assert_eq!(p.level, Some(Severity::Critical));
        let f = fields(&p);
        assert_eq!(f["facility"], "auth");
        assert_eq!(f["procid"], "77");
        assert!(!f.contains_key("log_time"));
    }

    #[test]
    fn rfc3164_with_and_without_pri() {
        let p =
            with_pri("<13>Feb  5 17:32:18 10.0.0.99 myapp[42]: hello", EVENT_NS).expect("parses");
        assert_eq!(p.format, Format::Rfc3164);
        assert_eq!(p.level, Some(Severity::Notice));
        let f = fields(&p);
        assert_eq!(f["log_time"], "2026-02-05T17:32:18Z");
        assert_eq!(f["hostname"], "10.0.0.99");
        assert_eq!(f["appname"], "myapp");
        assert_eq!(f["procid"], "42");
        assert_eq!(f["facility"], "user");

        let p = rfc3164(
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure;",
            EVENT_NS,
        )
        .expect("parses");
        assert_eq!(p.level, None);
        let f = fields(&p);
        assert_eq!(f["appname"], "sshd(pam_unix)");
        assert_eq!(f["procid"], "19939");
        // Mac style: a tag without a colon.
        let p = rfc3164(
            "Jul  1 09:03:01 calvisitor sandboxd[129] ([Safari]) deny",
            EVENT_NS,
        )
        .expect("parses");
        assert_eq!(fields(&p)["procid"], "129");
        let p = rfc3164("Jul  1 09:03:01 host kernel: x", EVENT_NS).expect("parses");
        assert_eq!(fields(&p)["appname"], "kernel");
    }

    #[test]
    fn malformed_syslog_is_not_parsed() {
        for line in [
            "<>1 - - - - -",
            "<192>1 - - - - - -",
            "<1a>Feb  5 17:32:18 h x",
            "<13>1 2003-10-11T22:14:15Z host",
            "<13>1 not-a-time host app - - -",
            "<13>1 - host app - - [unterminated x=\"1\"",
            "<13>1 - host app - - [id x=unquoted]",
            "<13>1 - host app - - garbage",
            "<13>Feb 30 17:32:18 host x",
            "<13>Hello world",
            "<13",
        ] {
            assert!(with_pri(line, EVENT_NS).is_none(), "{line:?}");
        }
        assert!(rfc3164("Jun 14 15:16:01", EVENT_NS).is_none());
        assert!(rfc3164("Jun 14 15:16:01 ", EVENT_NS).is_none());
    }
}
