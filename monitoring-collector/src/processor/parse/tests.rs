//! The parse step as a whole: format choice, the loghub samples, and arbitrary input.

use std::collections::BTreeMap;
use std::path::PathBuf;

use monitoring_common::severity::detect;
use monitoring_common::{Event, EventKind, LogEvent};
use proptest::prelude::*;

use super::*;

/// 2026-11-30T00:00:00Z.
const EVENT_NS: i64 = 1_795_996_800 * 1_000_000_000;

fn log(message: &str) -> LogEvent {
    match Event::log(EVENT_NS, "t", message).kind {
        EventKind::Log(log) => log,
        _ => unreachable!("Event::log makes a log"),
    }
}

#[test]
fn each_line_is_recognised_by_its_first_bytes() {
    let cases = [
        (r#"{"msg":"hi","level":"error"}"#, Format::Json),
        ("<34>1 - host app - - - msg", Format::Rfc5424),
        ("<13>Feb  5 17:32:18 host app: msg", Format::Rfc3164),
        ("Jun 14 15:16:01 combo sshd[1]: x", Format::Rfc3164),
        ("level=info msg=\"started\" port=80", Format::Logfmt),
        ("2015-10-18 18:01:47,978 INFO [main] x=1", Format::Timestamp),
        ("[Sun Dec 04 04:47:44 2005] [error] x", Format::Timestamp),
        // Looks like each format at first, is none of them.
        ("{not json", Format::None),
        ("<13 not syslog", Format::None),
        ("June is a month", Format::None),
        ("a=1", Format::None),
        (
            "seq=00000001 Jun 14 15:16:01 combo sshd[1]: x",
            Format::None,
        ),
        ("", Format::None),
        ("   ", Format::None),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line, EVENT_NS).format, want, "{line:?}");
    }
}

#[test]
fn apply_keeps_the_agents_fields_and_severity() {
    let mut event = log(r#"{"msg":"disk full","level":"error","n":1}"#);
    event.fields.insert("offset".into(), Value::Int(42));
    assert_eq!(apply(&mut event, EVENT_NS), Format::Json);
    assert_eq!(event.message, "disk full");
    assert_eq!(event.severity, Some(Severity::Error));
    assert_eq!(event.fields["offset"], Value::Int(42));
    assert_eq!(event.fields["n"], Value::Int(1));
    assert_eq!(event.fields["level"], Value::Str("error".into()));

    // journald gave a PRIORITY: it stays, though the text says otherwise.
    let mut event = log("level=error msg=x");
    event.severity = Some(Severity::Notice);
    apply(&mut event, EVENT_NS);
    assert_eq!(event.severity, Some(Severity::Notice));

    // No level field: the text decides.
    let mut event = log("Jun 14 15:16:01 combo sshd[1]: authentication failure");
    apply(&mut event, EVENT_NS);
    assert_eq!(event.severity, Some(Severity::Error));
    assert_eq!(
        event.message,
        "Jun 14 15:16:01 combo sshd[1]: authentication failure"
    );

    // Fields past the cap, or a field the agent already set: the line keeps its
    // text, so the dropped parts are not lost.
    let many: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
    let line = format!(r#"{{"msg":"m",{}}}"#, many.join(","));
    let mut event = log(&line);
    apply(&mut event, EVENT_NS);
    assert_eq!(event.message, line);
    assert_eq!(event.fields.len(), MAX_FIELDS);
    let line = r#"{"msg":"m","offset":"parsed"}"#;
    let mut event = log(line);
    event.fields.insert("offset".into(), Value::Int(42));
    apply(&mut event, EVENT_NS);
    assert_eq!(event.message, line);

    // Long lines: no JSON parse, the text kept whole.
    let long = format!(r#"{{"msg":"{}"}}"#, "x".repeat(MAX_PARSE_BYTES));
    let mut event = log(&long);
    assert_eq!(apply(&mut event, EVENT_NS), Format::None);
    assert_eq!(event.message, long);
}

fn loghub_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub")
}

/// A loghub file, the format its lines parse as, and the severities they get.
type LoghubCase = (&'static str, Format, &'static [(Severity, usize)]);

/// Every loghub sample: the format each file parses as, on how many lines; the
/// timestamp of every line; and the severity the level field gives.
#[test]
fn loghub_samples_parse_with_timestamps_and_severities() {
    use Severity::*;
    // (file, format, severities of the files whose lines have a level field, as
    // monitoring-common's detect test counts them, and BGL's from its level column)
    let cases: [LoghubCase; 10] = [
        (
            "Android_2k.log",
            Format::Timestamp,
            &[
                (Error, 3),
                (Warning, 170),
                (Info, 920),
                (Debug, 650),
                (Trace, 257),
            ],
        ),
        (
            "Apache_2k.log",
            Format::Timestamp,
            &[(Error, 595), (Notice, 1405)],
        ),
        // BGL's level column: FATAL, ERROR and SEVERE, WARNING, INFO.
        (
            "BGL_2k.log",
            Format::Timestamp,
            &[(Critical, 347), (Error, 48), (Warning, 8), (Info, 1597)],
        ),
        (
            "HDFS_2k.log",
            Format::Timestamp,
            &[(Warning, 80), (Info, 1920)],
        ),
        (
            "Hadoop_2k.log",
            Format::Timestamp,
            &[(Critical, 2), (Error, 150), (Warning, 808), (Info, 1040)],
        ),
        ("Linux_2k.log", Format::Rfc3164, &[]),
        ("Mac_2k.log", Format::Rfc3164, &[]),
        ("OpenSSH_2k.log", Format::Rfc3164, &[]),
        ("Spark_2k.log", Format::Timestamp, &[(Info, 2000)]),
        (
            "Zookeeper_2k.log",
            Format::Timestamp,
            &[(Error, 13), (Warning, 1318), (Info, 669)],
        ),
    ];
    let dir = loghub_dir();
    for (file, format, severities) in cases {
        let text = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("loghub sample {file} missing from {}: {e}", dir.display()));
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 2000, "{file}");
        let (mut formats, mut timed, mut got) = (BTreeMap::new(), 0, BTreeMap::new());
        for line in &lines {
            let mut event = log(line);
            *formats
                .entry(apply(&mut event, EVENT_NS).as_str())
                .or_insert(0) += 1;
            assert_eq!(event.message, *line, "{file}: text changed");
            if let Some(Value::Str(t)) = event.fields.get("log_time") {
                assert!(t.len() >= 20 && t.ends_with('Z'), "{file}: {t}");
                timed += 1;
            }
            assert_eq!(event.severity, detect(line), "{file}: {line}");
            *got.entry(event.severity).or_insert(0usize) += 1;
        }
        println!("{file}: {formats:?}, {timed} timestamps, severities {got:?}");
        assert_eq!(formats, BTreeMap::from([(format.as_str(), 2000)]), "{file}");
        assert_eq!(timed, 2000, "{file}: lines without log_time");
        if !severities.is_empty() {
            let want: BTreeMap<Option<Severity>, usize> =
                severities.iter().map(|(s, n)| (Some(*s), *n)).collect();
            assert_eq!(got, want, "{file}");
        }
    }
}

fn line_strategy() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just(String::new()),
        Just("{".to_string()),
        Just("{\"msg\":".to_string()),
        Just("<13>".to_string()),
        Just("<165>1 ".to_string()),
        Just("Jun 14 15:16:01 ".to_string()),
        Just("2015-10-18 18:01:47,978".to_string()),
        Just("[Sun Dec 04 04:47:44 2005]".to_string()),
        Just("- 1117838570 2005.06.03 ".to_string()),
        Just("03-17 16:13:38.811".to_string()),
        Just("a=1 b=".to_string()),
    ];
    (prefix, any::<String>(), "[ -~]{0,80}")
        .prop_map(|(p, unicode, ascii)| format!("{p}{ascii}{unicode}"))
}

proptest! {
    /// Whatever arrives, parsing does not panic, adds a bounded number of fields, and
    /// keeps the message: unchanged, or for JSON the document's own message.
    #[test]
    fn arbitrary_input_never_panics_or_loses_the_message(
        line in line_strategy(),
        event_ns in prop_oneof![Just(EVENT_NS), any::<i64>()],
    ) {
        let mut event = log(&line);
        let format = apply(&mut event, event_ns);
        prop_assert!(event.fields.len() <= MAX_FIELDS);
        if format == Format::Json {
            let doc: serde_json::Value = serde_json::from_str(&line).expect("was parsed as JSON");
            let from_doc = ["msg", "message", "log"]
                .iter()
                .find_map(|k| doc.get(k).and_then(|v| v.as_str()));
            // The document's message, or the whole line when fields had to be dropped.
            prop_assert!(
                event.message == line || Some(event.message.as_str()) == from_doc,
                "{:?} from {:?}", event.message, line
            );
        } else {
            prop_assert_eq!(&event.message, &line);
        }
    }
}
