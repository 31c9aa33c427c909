//! logfmt lines: `key=value key2="quoted value"`.
//!
//! Only a line made of such pairs and nothing else, with at least
//! [`MIN_PAIRS`], counts: prose that merely contains `a=b` (`acquire lock=1, flags=0x1`)
//! stays plain text. Values stay strings; the level and time keys are read as for JSON.

use monitoring_common::Value;

use super::{Format, Parsed, classify, timestamp};

/// Pairs a line needs to count as logfmt.
pub const MIN_PAIRS: usize = 2;

/// Parses `line` if it is logfmt.
pub fn parse(line: &str) -> Option<Parsed> {
    let mut parsed = Parsed::new(Format::Logfmt);
    let mut rest = line.trim_end();
    let mut pairs = 0usize;
    while !rest.is_empty() {
        rest = rest.trim_start_matches(' ');
        let eq = rest.find('=')?;
        let key = &rest[..eq];
        if key.is_empty() || !key.bytes().all(is_key_byte) {
            return None;
        }
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let (value, next) = unquote(quoted)?;
            if !(next.is_empty() || next.starts_with(' ')) {
                return None;
            }
            (value, next)
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            let value = &after[..end];
            if value.contains(['"', '=']) {
                return None;
            }
            (value.to_string(), &after[end..])
        };
        match key {
            "level" | "severity" | "lvl" if parsed.level.is_none() => {
                parsed.level = classify::level_name(&value);
            }
            "time" | "ts" | "timestamp" => {
                if let Some((stamp, used)) = timestamp::iso(value.as_bytes())
                    && used == value.len()
                {
                    parsed.field("log_time", Value::Str(stamp.to_rfc3339()));
                }
            }
            _ => {}
        }
        parsed.field(key, Value::Str(value));
        pairs += 1;
        rest = next;
    }
    (pairs >= MIN_PAIRS).then_some(parsed)
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/' | b'@')
}

/// A quoted value after its opening quote, with `\"` and `\\` unescaped.
fn unquote(s: &str) -> Option<(String, &str)> {
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
            '\\' => match chars.next()? {
                (_, 'n') => value.push('\n'),
                (_, 't') => value.push('\t'),
                (_, e) => value.push(e),
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitoring_common::Severity;

    #[test]
    fn pairs_quoted_values_level_and_time() {
        let p = parse(r#"ts=2024-05-01T12:00:00Z level=warn msg="disk \"sda\" slow" empty= n=3"#)
            .expect("parses");
        assert_eq!(p.format, Format::Logfmt);
        assert_eq!(p.level, Some(Severity::Warning));
        let got: Vec<(&str, &Value)> = p.fields.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let s = |v: &str| Value::Str(v.to_string());
        assert_eq!(
            got,
            [
                ("log_time", &s("2024-05-01T12:00:00Z")),
                ("ts", &s("2024-05-01T12:00:00Z")),
                ("level", &s("warn")),
                ("msg", &s("disk \"sda\" slow")),
                ("empty", &s("")),
                ("n", &s("3")),
            ]
        );
    }

    #[test]
    fn prose_and_malformed_pairs_are_not_logfmt() {
        for line in [
            "a=1",
            "acquire lock=233570404, flags=0x1",
            "seq=00000001 Jun 14 15:16:01 combo sshd",
            "a=1 b=\"unterminated",
            "a=1 b=\"x\"y",
            "a=1 =2",
            "a=1 b=c=d",
            "a b=1 c=2",
            "",
        ] {
            assert!(parse(line).is_none(), "{line:?}");
        }
    }
}
