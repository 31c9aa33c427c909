//! JSON object lines: fields flattened with dotted keys, the message from `msg`,
//! `message` or `log`, the level from `level`, `severity` or `lvl`, the time from
//! `time`, `ts`, `timestamp` or `@timestamp`.
//!
//! Objects nested deeper than [`MAX_DEPTH`] and arrays are kept as compact JSON
//! strings rather than flattened, so one line never turns into unbounded fields.

use monitoring_common::Value;
use serde_json::Value as Json;

use super::{Format, Parsed, classify, timestamp};

/// Object levels flattened into dotted keys; deeper ones stay JSON text.
pub const MAX_DEPTH: usize = 4;

const MESSAGE_KEYS: [&str; 3] = ["msg", "message", "log"];
const LEVEL_KEYS: [&str; 3] = ["level", "severity", "lvl"];
const TIME_KEYS: [&str; 4] = ["time", "ts", "timestamp", "@timestamp"];

/// Parses `line` if it is one JSON object.
pub fn parse(line: &str) -> Option<Parsed> {
    // serde_json refuses nesting past 128 levels, so hostile input cannot
    // exhaust the stack.
    let Json::Object(map) = serde_json::from_str::<Json>(line).ok()? else {
        return None;
    };
    let mut parsed = Parsed::new(Format::Json);
    let message_key = MESSAGE_KEYS
        .into_iter()
        .find(|k| map.get(*k).is_some_and(Json::is_string));
    for key in LEVEL_KEYS {
        let level = match map.get(key) {
            Some(Json::String(s)) => classify::level_name(s),
            Some(Json::Number(n)) => n.as_i64().and_then(classify::level_number),
            _ => None,
        };
        if level.is_some() {
            parsed.level = level;
            break;
        }
    }
    if let Some(time) = TIME_KEYS.into_iter().find_map(|k| map.get(k)) {
        let stamp = match time {
            Json::String(s) => timestamp::iso(s.as_bytes()).map(|(stamp, _)| stamp.to_rfc3339()),
            Json::Number(n) => n.as_f64().and_then(timestamp::from_epoch_guess),
            _ => None,
        };
        if let Some(stamp) = stamp {
            parsed.field("log_time", Value::Str(stamp));
        }
    }
    for (key, value) in map {
        if Some(key.as_str()) == message_key {
            if let Json::String(message) = value {
                parsed.message = Some(message);
            }
            continue;
        }
        flatten(&mut parsed, key, value, 1);
    }
    Some(parsed)
}

fn flatten(parsed: &mut Parsed, key: String, value: Json, depth: usize) {
    if parsed.is_full() {
        parsed.truncated = true;
        return;
    }
    let value = match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Str(s),
        Json::Object(map) if depth < MAX_DEPTH && !map.is_empty() => {
            for (k, v) in map {
                flatten(parsed, format!("{key}.{k}"), v, depth + 1);
            }
            return;
        }
        other @ (Json::Array(_) | Json::Object(_)) => Value::Str(other.to_string()),
    };
    parsed.field(key, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitoring_common::Severity;
    use std::collections::BTreeMap;

    fn fields(p: &Parsed) -> BTreeMap<&str, &Value> {
        p.fields.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }

    #[test]
    fn flattens_and_picks_message_level_and_time() {
        let p = parse(
            r#"{"ts":"2024-05-01T12:00:00.5Z","level":"warn","msg":"disk slow","disk":{"dev":"sda","stats":{"util":0.9,"io":{"r":1,"w":{"deep":true}}}},"tags":["a","b"],"ok":false,"n":null,"big":18446744073709551615}"#,
        )
        .expect("parses");
        assert_eq!(p.format, Format::Json);
        assert_eq!(p.message.as_deref(), Some("disk slow"));
        assert_eq!(p.level, Some(Severity::Warning));
        let f = fields(&p);
        assert_eq!(f["log_time"], &Value::Str("2024-05-01T12:00:00.5Z".into()));
        assert_eq!(f["disk.dev"], &Value::Str("sda".into()));
        assert_eq!(f["disk.stats.util"], &Value::Float(0.9));
        assert_eq!(f["disk.stats.io.r"], &Value::Int(1));
        // Past MAX_DEPTH: kept as JSON text.
        assert_eq!(f["disk.stats.io.w"], &Value::Str(r#"{"deep":true}"#.into()));
        assert_eq!(f["tags"], &Value::Str(r#"["a","b"]"#.into()));
        assert_eq!(f["ok"], &Value::Bool(false));
        assert_eq!(f["n"], &Value::Null);
        assert_eq!(f["big"], &Value::Float(18446744073709551615.0));
        assert_eq!(f["level"], &Value::Str("warn".into()));
        assert!(!f.contains_key("msg"));
    }

    #[test]
    fn tricky_objects() {
        // A numeric (bunyan/pino) level, `message` when there is no `msg`, epoch ms.
        let p = parse(r#"{"level":50,"message":"boom","time":1717200000123}"#).expect("parses");
        assert_eq!(p.level, Some(Severity::Error));
        assert_eq!(p.message.as_deref(), Some("boom"));
        assert_eq!(
            fields(&p)["log_time"],
            &Value::Str("2024-06-01T00:00:00.123Z".into())
        );
        // A non-string msg is a field, not the message; an unknown level is no level.
        let p = parse(r#"{"msg":{"a":1},"log":"text","severity":"loud"}"#).expect("parses");
        assert_eq!(p.message.as_deref(), Some("text"));
        assert_eq!(p.level, None);
        assert_eq!(fields(&p)["msg.a"], &Value::Int(1));
        // No message key: the caller keeps the line.
        let p = parse(r#"{"a":"b"}"#).expect("parses");
        assert_eq!(p.message, None);
        // Too many fields: capped.
        let many: String = (0..500)
            .map(|i| format!("\"k{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let p = parse(&format!("{{{many}}}")).expect("parses");
        assert_eq!(p.fields.len(), super::super::MAX_FIELDS);
        assert!(p.truncated);
    }

    #[test]
    fn malformed_or_non_object_json_is_not_parsed() {
        let deep = format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200));
        for line in [
            "{",
            "{\"a\":}",
            "{\"a\":1} trailing",
            "[1,2]",
            "\"string\"",
            "{'a':1}",
            deep.as_str(),
        ] {
            assert!(parse(line).is_none(), "{line:?}");
        }
    }
}
