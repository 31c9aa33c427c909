//! `[[storage.sinks]]` validation, through the collector's whole config so that
//! every problem is reported with its line.

use std::path::Path;

use super::config::{RouteKind, SinkType};
use crate::config::Config;

fn parse(sinks: &str) -> Result<Config, String> {
    monitoring_common::config::parse::<Config>(sinks, Path::new("collector.toml"))
        .map_err(|e| e.to_string())
}

fn problems(sinks: &str) -> Vec<String> {
    parse(sinks)
        .expect_err("invalid sinks accepted")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_type_parses_with_its_documented_defaults() {
    let config = parse(
        r#"
[[storage.sinks]]
type = "file"
path = "var/sinks/events.ndjson"

[[storage.sinks]]
type = "console"
required = true

[[storage.sinks]]
type = "blackhole"

[[storage.sinks]]
type = "prometheus_remote_write"
url = "http://127.0.0.1:9090/api/v1/write"
bearer_token = "t"
kinds = ["metric"]

[[storage.sinks]]
type = "file"
name = "errors"
path = "var/sinks/errors.ndjson"
min_severity = "warning"
kinds = ["log", "flow"]
"#,
    )
    .expect("valid");
    let sinks = &config.storage.sinks;
    let kinds: Vec<SinkType> = sinks.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            SinkType::File,
            SinkType::Console,
            SinkType::Blackhole,
            SinkType::PrometheusRemoteWrite,
            SinkType::File,
        ]
    );
    let names: Vec<&str> = sinks.iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        [
            "file",
            "console",
            "blackhole",
            "prometheus_remote_write",
            "errors"
        ]
    );
    let file = &sinks[0];
    assert!(!file.required);
    assert_eq!(file.queue_batches, 1024);
    assert_eq!((file.retry_initial_ms, file.retry_max_ms), (100, 10_000));
    assert_eq!((file.max_attempts, file.timeout_ms), (3, 10_000));
    assert_eq!(file.kinds, None);
    let settings = super::file::FileSettings::from_config(file);
    assert_eq!(settings.max_bytes, 100 << 20);
    assert_eq!(settings.max_age.as_secs(), 3600);
    assert_eq!(
        (settings.max_files, settings.gzip, settings.durable),
        (10, false, false)
    );
    assert!(sinks[1].required);
    assert_eq!(sinks[4].kinds, Some(vec![RouteKind::Log, RouteKind::Flow]));
    assert!(sinks[4].min_severity().is_some_and(|s| s.is_ok()));
}

#[test]
fn store_sinks_parse_and_their_urls_are_checked_without_being_repeated() {
    parse("[[storage.sinks]]\ntype = \"postgres\"\nurl = \"postgres://u@h/db\"\n")
        .expect("postgres");
    parse("[[storage.sinks]]\ntype = \"postgres\"\nurl = \"postgres://u@h/db?sslmode=require\"\n")
        .expect("postgres over TLS");
    parse("[[storage.sinks]]\ntype = \"clickhouse\"\nurl = \"http://h:8123/?database=m\"\n")
        .expect("clickhouse");
    for (kind, url) in [
        ("postgres", "postgres://u:secret@h/db?sslmode=verify-full"),
        ("clickhouse", "ftp://u:secret@h/"),
    ] {
        let got = problems(&format!(
            "[[storage.sinks]]\ntype = \"{kind}\"\nurl = \"{url}\"\n"
        ));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("collector.toml:3: key `storage.sinks[0].url`"),
            "{got:?}"
        );
        assert!(!got[0].contains("secret"), "{got:?}");
    }
}

#[test]
fn missing_and_misplaced_keys_are_located() {
    let got = problems(
        r#"
[[storage.sinks]]
type = "file"

[[storage.sinks]]
type = "prometheus_remote_write"
path = "x.ndjson"
gzip = true

[[storage.sinks]]
type = "console"
url = "http://x/"
bearer_token = "t"
max_files = 3
"#,
    );
    assert_eq!(
        got,
        [
            "collector.toml:2: key `storage.sinks[0].path`: is required for type file",
            "collector.toml:5: key `storage.sinks[1].url`: is required for type prometheus_remote_write",
            "collector.toml:7: key `storage.sinks[1].path`: does not apply to type prometheus_remote_write",
            "collector.toml:8: key `storage.sinks[1].gzip`: does not apply to type prometheus_remote_write",
            "collector.toml:12: key `storage.sinks[2].url`: does not apply to type console",
            "collector.toml:13: key `storage.sinks[2].bearer_token`: does not apply to type console",
            "collector.toml:14: key `storage.sinks[2].max_files`: does not apply to type console",
        ],
    );
}

#[test]
fn bad_values_are_reported_all_at_once() {
    let got = problems(
        r#"
[[storage.sinks]]
type = "file"
name = "has space"
path = "e.ndjson"
max_bytes = 100
max_age_secs = 0
kinds = []
min_severity = "loud"
queue_batches = 0
retry_initial_ms = 500
retry_max_ms = 100
max_attempts = 0
timeout_ms = 0

[[storage.sinks]]
type = "prometheus_remote_write"
url = "127.0.0.1:9090/api/v1/write"
bearer_token = " "
kinds = ["metric", "log"]
required = true
queue_batches = 5
retry_max_ms = 7200000
"#,
    );
    assert_eq!(
        got,
        [
            "collector.toml:4: key `storage.sinks[0].name`: must be 1 to 64 letters, digits, `_` or `-`",
            "collector.toml:6: key `storage.sinks[0].max_bytes`: must be at least 4096",
            "collector.toml:7: key `storage.sinks[0].max_age_secs`: must be at least 1",
            "collector.toml:8: key `storage.sinks[0].kinds`: must list at least one of log, metric, flow",
            "collector.toml:9: key `storage.sinks[0].min_severity`: unknown severity \"loud\" (expected emergency, alert, critical, error, warning, notice, info, debug or trace)",
            "collector.toml:10: key `storage.sinks[0].queue_batches`: must be between 1 and 1000000",
            "collector.toml:11: key `storage.sinks[0].retry_initial_ms`: must be at least 1 and at most retry_max_ms",
            "collector.toml:13: key `storage.sinks[0].max_attempts`: must be between 1 and 100",
            "collector.toml:14: key `storage.sinks[0].timeout_ms`: must be between 1 and 600000",
            "collector.toml:18: key `storage.sinks[1].url`: must be an http:// or https:// URL",
            "collector.toml:19: key `storage.sinks[1].bearer_token`: must not be empty (leave it out instead)",
            "collector.toml:20: key `storage.sinks[1].kinds`: prometheus_remote_write takes metrics only",
            "collector.toml:22: key `storage.sinks[1].queue_batches`: does not apply to a required sink (it has no queue)",
            "collector.toml:23: key `storage.sinks[1].retry_max_ms`: must be at most 3600000 (an hour)",
        ],
    );
}

#[test]
fn names_must_be_unique_and_unknown_keys_are_errors() {
    let got = problems(
        "[[storage.sinks]]\ntype = \"file\"\npath = \"a\"\n\n[[storage.sinks]]\ntype = \"file\"\npath = \"b\"\n",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("storage.sinks[1].name") && got[0].contains("used twice"),
        "{got:?}"
    );
    parse("[[storage.sinks]]\ntype = \"file\"\npath = \"a\"\n\n[[storage.sinks]]\ntype = \"file\"\nname = \"b\"\npath = \"b\"\n")
        .expect("distinct names");

    let got = problems("[[storage.sinks]]\ntype = \"blackhole\"\nqueue_size = 3\n");
    assert!(
        got[0].starts_with("collector.toml:3: key `storage.sinks[0].queue_size`"),
        "{got:?}"
    );
    let got = problems("[[storage.sinks]]\ntype = \"kafka\"\n");
    assert!(
        got[0].starts_with("collector.toml:2: key `storage.sinks[0].type`"),
        "{got:?}"
    );
    let got = problems("[[storage.sinks]]\nname = \"x\"\n");
    assert!(got[0].contains("type"), "{got:?}");
}

#[test]
fn the_commented_examples_in_the_example_file_are_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/collector.toml");
    let text = std::fs::read_to_string(&path).expect("config/collector.toml exists");
    let start = text
        .find("# [[storage.sinks]]: more places")
        .expect("the sinks examples");
    let examples: String = text[start..]
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            *l == "[[storage.sinks]]"
                || l.split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    // The example reads its token from the environment.
    let examples = examples.replace("${PROMETHEUS_TOKEN}", "example-token");
    let config = parse(&examples).unwrap_or_else(|e| panic!("{e}\n{examples}"));
    let types: Vec<&str> = config
        .storage
        .sinks
        .iter()
        .map(|s| s.kind.as_str())
        .collect();
    assert_eq!(
        types,
        ["file", "console", "prometheus_remote_write", "blackhole"]
    );
}
