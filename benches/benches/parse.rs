//! The collector's parse step (parse, classify, fill fields) on loghub lines: events
//! per second for each sample file, and for JSON, logfmt and RFC 5424 lines built
//! from them (loghub has none of those); and the severity reading alone, for
//! comparison.

#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use monitoring_benches::loghub_events;
use monitoring_collector::processor::parse::{self, Format};
use monitoring_common::{EventKind, LogEvent};

/// 2026-11-30T00:00:00Z, the time that completes year-less timestamps.
const EVENT_NS: i64 = 1_795_996_800 * 1_000_000_000;

fn logs_by_file() -> BTreeMap<String, Vec<LogEvent>> {
    let mut files: BTreeMap<String, Vec<LogEvent>> = BTreeMap::new();
    for event in loghub_events() {
        let name = event
            .source
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches("_2k.log")
            .to_string();
        if let EventKind::Log(log) = event.kind {
            files.entry(name).or_default().push(log);
        }
    }
    files
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// JSON, logfmt and RFC 5424 renderings of `lines`.
fn structured(lines: &[LogEvent]) -> Vec<(&'static str, Vec<LogEvent>)> {
    let render = |f: &dyn Fn(usize, &str) -> String| -> Vec<LogEvent> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| LogEvent {
                message: f(i, &l.message),
                severity: None,
                fields: Default::default(),
            })
            .collect()
    };
    vec![
        (
            "json",
            render(&|i, m| {
                format!(
                    r#"{{"ts":"2024-05-01T12:00:{:02}.{i:03}Z","level":"info","logger":"spark.executor","thread":{{"id":{i},"name":"main"}},"msg":"{}"}}"#,
                    i % 60,
                    escape(m)
                )
            }),
        ),
        (
            "logfmt",
            render(&|i, m| {
                format!(
                    r#"ts=2024-05-01T12:00:{:02}Z level=info logger=spark.executor thread={i} msg="{}""#,
                    i % 60,
                    escape(m)
                )
            }),
        ),
        (
            "rfc5424",
            render(&|i, m| {
                format!(
                    r#"<14>1 2024-05-01T12:00:{:02}.{i:03}Z node-7 spark {i} EXEC [meta seq="{i}" zone="a"] {m}"#,
                    i % 60
                )
            }),
        ),
    ]
}

fn parse_step(c: &mut Criterion) {
    let files = logs_by_file();
    assert!(!files.is_empty(), "loghub data missing");
    let spark = files.get("Spark").expect("Spark sample");
    let mut inputs: Vec<(String, Vec<LogEvent>)> = files.clone().into_iter().collect();
    inputs.extend(
        structured(spark)
            .into_iter()
            .map(|(name, logs)| (name.to_string(), logs)),
    );

    let mut g = c.benchmark_group("parse");
    for (name, logs) in &inputs {
        let mut formats: BTreeMap<&str, usize> = BTreeMap::new();
        for log in logs {
            let mut log = log.clone();
            *formats
                .entry(parse::apply(&mut log, EVENT_NS).as_str())
                .or_default() += 1;
        }
        println!("{name}: {} lines, {formats:?}", logs.len());
        assert!(
            !formats.contains_key(Format::None.as_str()) || name == "none",
            "{name}: lines left unparsed"
        );
        g.throughput(Throughput::Elements(logs.len() as u64));
        g.bench_function(name.as_str(), |b| {
            // Cloning the events is setup, not measured.
            b.iter_batched(
                || logs.clone(),
                |mut logs| {
                    for log in &mut logs {
                        parse::apply(log, EVENT_NS);
                    }
                    logs
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();

    // The severity reading alone (what an event costs with parsing switched off and
    // no severity from the agent), to show what parsing adds to it.
    let mut g = c.benchmark_group("detect_only");
    for (name, logs) in &inputs {
        g.throughput(Throughput::Elements(logs.len() as u64));
        g.bench_function(name.as_str(), |b| {
            b.iter(|| {
                logs.iter()
                    .filter_map(|l| monitoring_common::severity::detect(&l.message))
                    .count()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse_step);
criterion_main!(benches);
