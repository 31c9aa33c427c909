//! The processor's parse step through the real collector: lines sent as an agent
//! sends them come back from the REST API with their fields, severity and the
//! agent's host label, and the collector counts them by format.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::time::{Duration, Instant};

use common::{Collector, gauge, log_frame, marker, round_trip};
use monitoring_common::protocol::{AckStatus, Codec};
use serde_json::{Value, json};

/// The logs whose message contains `m`, oldest first.
async fn logs(collector: &Collector, m: &str) -> Vec<Value> {
    let (status, body) = collector
        .get(&format!("/api/v1/logs?q={m}&order=asc&limit=100"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["logs"].as_array().unwrap().clone()
}

#[tokio::test]
async fn stored_logs_carry_parsed_fields_severity_and_the_agents_host() {
    let started = Instant::now();
    let collector = Collector::start().await;
    let mut agent = collector.connect("web-3").await;
    let m = marker("parse");
    // The agent's inventory first, as its host metrics send it.
    let info = vec![gauge(
        "host_info",
        &[
            ("hostname", "web3.example"),
            ("os", "Debian"),
            ("env", "prod"),
        ],
        1.0,
    )];
    let ack = round_trip(&mut agent, common::frame(Codec::Lz4, 1, 1, &info)).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
    let lines = [
        format!(
            r#"{{"ts":"2024-05-01T12:00:00.5Z","level":"warn","msg":"{m} json","req":{{"id":7,"path":"/x"}}}}"#
        ),
        format!("ts=2024-05-01T12:00:01Z level=error msg=\"{m} logfmt\" user=ann"),
        format!("<165>1 2024-05-01T12:00:02Z db1 pg 77 ID1 [meta seq=\"9\"] {m} rfc5424"),
        format!("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: {m} authentication failure"),
        format!("2015-10-18 18:01:47,978 INFO [main] {m} hadoop"),
        format!("{m} nothing to see"),
    ];
    let ack = round_trip(&mut agent, log_frame(Codec::Zstd, 1, 2, &lines)).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");

    let got = logs(&collector, &m).await;
    assert_eq!(got.len(), lines.len(), "{got:#?}");
    let by_text = |needle: &str| -> &Value {
        got.iter()
            .find(|l| l["message"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no log with {needle}: {got:#?}"))
    };
    for log in &got {
        assert_eq!(log["labels"]["host"], "web3.example", "{log}");
        assert_eq!(log["labels"]["env"], "prod", "{log}");
        assert!(log["labels"].get("os").is_none(), "{log}");
    }

    let json_log = by_text("json");
    assert_eq!(json_log["message"], format!("{m} json"));
    assert_eq!(json_log["severity"], "warning");
    assert_eq!(json_log["fields"]["log_time"], "2024-05-01T12:00:00.5Z");
    assert_eq!(json_log["fields"]["req.id"], 7);
    assert_eq!(json_log["fields"]["req.path"], "/x");

    let logfmt_log = by_text("logfmt");
    assert_eq!(logfmt_log["message"], lines[1]);
    assert_eq!(logfmt_log["severity"], "error");
    assert_eq!(logfmt_log["fields"]["user"], "ann");
    assert_eq!(logfmt_log["fields"]["log_time"], "2024-05-01T12:00:01Z");

    let syslog_log = by_text("rfc5424");
    assert_eq!(syslog_log["severity"], "notice");
    assert_eq!(syslog_log["fields"]["hostname"], "db1");
    assert_eq!(syslog_log["fields"]["appname"], "pg");
    assert_eq!(syslog_log["fields"]["procid"], "77");
    assert_eq!(syslog_log["fields"]["facility"], "local4");
    assert_eq!(syslog_log["fields"]["sd.meta.seq"], "9");

    let file_log = by_text("authentication");
    assert_eq!(file_log["message"], lines[3]);
    assert_eq!(file_log["severity"], "error");
    assert_eq!(file_log["fields"]["appname"], "sshd(pam_unix)");
    assert_eq!(file_log["fields"]["procid"], "19939");
    assert!(
        file_log["fields"]["log_time"]
            .as_str()
            .unwrap()
            .contains("-06-14T15:16:01Z")
    );

    let hadoop = by_text("hadoop");
    assert_eq!(hadoop["severity"], "info");
    assert_eq!(hadoop["fields"]["log_time"], "2015-10-18T18:01:47.978Z");

    let plain = by_text("nothing to see");
    assert_eq!(plain["message"], lines[5]);
    assert!(plain["severity"].is_null(), "{plain}");
    assert!(plain["fields"].get("log_time").is_none(), "{plain}");

    let metrics = collector.self_metrics().await;
    for format in ["json", "logfmt", "rfc5424", "rfc3164", "timestamp", "none"] {
        let series = format!("monitoring_processor_parsed_total{{format=\"{format}\"}} 1");
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
    }
    println!("parse through the collector: {:?}", started.elapsed());
}

/// After a restart the collector knows the agent's host from its store before the
/// agent sends host info again.
#[tokio::test]
async fn the_host_label_survives_a_collector_restart() {
    let started = Instant::now();
    let mut collector = Collector::start().await;
    let mut agent = collector.connect("db-9").await;
    let info = vec![gauge("host_info", &[("hostname", "db9.example")], 1.0)];
    let ack = round_trip(&mut agent, common::frame(Codec::Lz4, 1, 1, &info)).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
    drop(agent);
    assert_eq!(collector.terminate(Duration::from_secs(20)), Some(0));
    let dir = std::mem::replace(&mut collector.dir, tempfile::tempdir().unwrap());
    drop(collector);

    let collector = Collector::start_full("", "", "", dir).await;
    let mut agent = collector.connect("db-9").await;
    let m = marker("restart");
    let ack = round_trip(
        &mut agent,
        log_frame(Codec::Lz4, 2, 1, &[format!("{m} hello")]),
    )
    .await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
    let got = logs(&collector, &m).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["labels"], json!({"host": "db9.example"}));
    println!("restart: {:?}", started.elapsed());
}
