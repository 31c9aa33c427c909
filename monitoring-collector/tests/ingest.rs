//! Ingest against the real collector binary: acknowledgements after commit,
//! deduplication, rejections that harm nobody, and authentication.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Collector, connect, log_frame, marker, recv_ack, round_trip, send};
use futures_util::{SinkExt, StreamExt};
use monitoring_common::protocol::{AckStatus, Codec};
use tokio_tungstenite::tungstenite::Message;

fn lines(marker: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("line {i} {marker}")).collect()
}

#[tokio::test]
async fn a_good_batch_is_acked_searchable_and_stored_once_when_resent() {
    let collector = Collector::start().await;
    let mut agent = collector.connect("web-01").await;
    let m = marker("goodbatch");
    let frame = log_frame(Codec::Zstd, 7, 1, &lines(&m, 3));

    let ack = round_trip(&mut agent, frame.clone()).await;
    assert_eq!(
        (ack.status, ack.stream_id, ack.sequence),
        (AckStatus::Ok, 7, 1),
        "{ack:?}"
    );

    let (status, body) = collector
        .get(&format!("/api/v1/logs?q={m}&order=asc"))
        .await;
    assert_eq!(status, 200, "{body}");
    let logs = body["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 3, "{body}");
    let first = &logs[0];
    assert_eq!(first["agent_id"], "web-01");
    assert_eq!(first["source"], "/var/log/test.log");
    assert_eq!(first["message"], format!("line 0 {m}"));
    assert!(first["severity"].is_null());
    let ts = first["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == 30, "{ts}");
    assert!(first["timestamp_ns"].as_i64().unwrap() > 0);
    assert!(first["labels"].is_object() && first["fields"].is_object());
    assert!(body["next_cursor"].is_null(), "{body}");

    // The same batch again (a resend after a lost ack): ok, and not stored twice.
    let ack = round_trip(&mut agent, frame).await;
    assert_eq!((ack.status, ack.sequence), (AckStatus::Ok, 1), "{ack:?}");
    let (_, body) = collector.get(&format!("/api/v1/logs?q={m}")).await;
    assert_eq!(body["logs"].as_array().unwrap().len(), 3, "{body}");

    // Also over a new connection of the same agent.
    let mut again = collector.connect("web-01").await;
    let ack = round_trip(&mut again, log_frame(Codec::Zstd, 7, 1, &lines(&m, 3))).await;
    assert_eq!(ack.status, AckStatus::Ok);
    let (_, body) = collector.get(&format!("/api/v1/logs?q={m}")).await;
    assert_eq!(body["logs"].as_array().unwrap().len(), 3, "{body}");

    let metrics = collector.self_metrics().await;
    assert!(
        metrics.contains("monitoring_ingest_batches_committed_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("monitoring_ingest_batches_duplicate_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("monitoring_storage_events_stored_total{kind=\"log\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_window_of_batches_in_flight_is_acked_batch_by_batch() {
    let collector = Collector::start().await;
    let mut agent = collector.connect("window").await;
    let m = marker("window");
    for seq in 1..=20u64 {
        let codec = Codec::ALL[seq as usize % Codec::ALL.len()];
        send(
            &mut agent,
            log_frame(codec, 1, seq, &[format!("{m} seq {seq}")]),
        )
        .await;
    }
    let mut acked = BTreeSet::new();
    for _ in 0..20 {
        let ack = recv_ack(&mut agent).await;
        assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
        assert!(acked.insert(ack.sequence), "acked twice: {ack:?}");
    }
    assert_eq!(acked, (1..=20).collect());
    let (_, body) = collector
        .get(&format!("/api/v1/logs?q={m}&limit=100"))
        .await;
    assert_eq!(body["logs"].as_array().unwrap().len(), 20);

    // Pings are answered.
    agent
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(10), agent.next())
        .await
        .unwrap();
    assert!(matches!(pong, Some(Ok(Message::Pong(p))) if p.as_ref() == b"are you there"));
}

#[tokio::test]
async fn bad_frames_are_rejected_with_a_reason_and_harm_nothing_else() {
    // Small limits so that an oversize frame is cheap to build.
    let collector = Collector::start_with("", "max_frame_bytes = 65536").await;
    let mut agent = collector.connect("agent-a").await;
    let mut other = collector.connect("agent-b").await;
    let m = marker("badframes");
    let mut seq = 0;
    let mut good = |agent: &str| {
        seq += 1;
        (
            seq,
            log_frame(Codec::Lz4, 3, seq, &[format!("{agent} {m} {seq}")]),
        )
    };

    // A corrupt compressed payload.
    let mut corrupt = log_frame(Codec::Zstd, 3, 100, &lines(&m, 5));
    let len = corrupt.len();
    corrupt[40..len].iter_mut().for_each(|b| *b ^= 0x5A);
    // Events that do not decode: an unknown event kind.
    let mut malformed = log_frame(Codec::None, 3, 101, &lines(&m, 1));
    malformed[32] = 99;
    // An unknown codec.
    let mut unknown_codec = log_frame(Codec::None, 3, 102, &lines(&m, 1));
    unknown_codec[3] = 42;
    // Over max_frame_bytes but under the hard cap.
    let oversize = log_frame(Codec::None, 3, 103, &["x".repeat(100_000)]);
    assert!(oversize.len() > 65_536);

    let cases: [(&str, Vec<u8>, u64, &str); 4] = [
        ("corrupt payload", corrupt, 100, "corrupt zstd payload"),
        ("malformed events", malformed, 101, "malformed event"),
        ("unknown codec", unknown_codec, 102, "unknown codec 42"),
        (
            "oversize",
            oversize,
            103,
            "exceeds the limit of 65536 bytes",
        ),
    ];
    for (what, bad, bad_seq, reason) in cases {
        let ack = round_trip(&mut agent, bad).await;
        assert_eq!(ack.status, AckStatus::Rejected, "{what}: {ack:?}");
        assert_eq!(
            (ack.stream_id, ack.sequence),
            (3, bad_seq),
            "{what}: {ack:?}"
        );
        assert!(
            ack.reason.contains(reason),
            "{what}: reason {:?} lacks {reason:?}",
            ack.reason
        );

        // The same connection still works...
        let (s, frame) = good("agent-a");
        let ack = round_trip(&mut agent, frame).await;
        assert_eq!(
            (ack.status, ack.sequence),
            (AckStatus::Ok, s),
            "{what}: {ack:?}"
        );
        // ...and so does another agent's.
        let (s, frame) = good("agent-b");
        let ack = round_trip(&mut other, frame).await;
        assert_eq!(
            (ack.status, ack.sequence),
            (AckStatus::Ok, s),
            "{what}: {ack:?}"
        );
    }

    // A text message and garbage too short to name a batch.
    agent.send(Message::text("hello")).await.unwrap();
    let ack = recv_ack(&mut agent).await;
    assert_eq!(
        (ack.status, ack.stream_id, ack.sequence),
        (AckStatus::Rejected, 0, 0)
    );
    let ack = round_trip(&mut agent, b"MB".to_vec()).await;
    assert_eq!(ack.status, AckStatus::Rejected);
    assert!(
        ack.reason.contains("shorter than the 32-byte header"),
        "{ack:?}"
    );
    let (s, frame) = good("agent-a");
    assert_eq!(round_trip(&mut agent, frame).await.sequence, s);

    // Every good batch was stored, none of the bad ones.
    let (_, body) = collector
        .get(&format!("/api/v1/logs?q={m}&limit=1000"))
        .await;
    let messages: Vec<&str> = body["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.len(), 9, "{messages:?}");
    assert!(
        messages.iter().all(|msg| !msg.starts_with("line")),
        "{messages:?}"
    );

    let metrics = collector.self_metrics().await;
    for (reason, n) in [("malformed", 3), ("codec", 1), ("limit", 1), ("text", 1)] {
        let line = format!("monitoring_ingest_batches_rejected_total{{reason=\"{reason}\"}} {n}");
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
}

#[tokio::test]
async fn a_message_over_the_hard_cap_closes_only_its_connection() {
    let collector = Collector::start_with("", "max_frame_bytes = 65536").await;
    let mut agent = collector.connect("huge").await;
    let mut other = collector.connect("bystander").await;
    // Hard cap: 2 * 65536 + 1 MiB.
    let huge = log_frame(Codec::None, 1, 1, &["y".repeat(1_300_000)]);
    assert!(huge.len() > 2 * 65_536 + (1 << 20));
    // The collector may close before the whole message is written.
    drop(agent.send(Message::binary(huge)).await);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match agent.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Binary(b))) => panic!("unexpected ack {b:?}"),
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection not closed");
    let ack = round_trip(
        &mut other,
        log_frame(Codec::Gzip, 1, 1, &["still here".into()]),
    )
    .await;
    assert_eq!(ack.status, AckStatus::Ok);
}

#[tokio::test]
async fn an_upgrade_without_a_valid_agent_id_is_refused_with_401() {
    let collector = Collector::start().await;
    for agent in [None, Some("has space"), Some("")] {
        let err = connect(collector.ws, agent)
            .await
            .expect_err("connected without an agent id");
        let tokio_tungstenite::tungstenite::Error::Http(response) = err else {
            panic!("{agent:?}: not an HTTP refusal: {err}");
        };
        assert_eq!(response.status(), 401, "{agent:?}");
        let body: serde_json::Value =
            serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("x-monitoring-agent-id"),
            "{body}"
        );
    }
    let metrics = collector.self_metrics().await;
    assert!(
        metrics.contains("monitoring_ingest_connections_refused_total{reason=\"auth\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_with_503() {
    let collector = Collector::start_with("max_connections = 1", "").await;
    let mut first = collector.connect("one").await;
    let err = connect(collector.ws, Some("two"))
        .await
        .expect_err("second connection accepted");
    let tokio_tungstenite::tungstenite::Error::Http(response) = err else {
        panic!("not an HTTP refusal: {err}");
    };
    assert_eq!(response.status(), 503);
    let ack = round_trip(&mut first, log_frame(Codec::Snappy, 1, 1, &["x".into()])).await;
    assert_eq!(ack.status, AckStatus::Ok);
    // Closing the first frees the slot.
    first.close(None).await.unwrap();
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while connect(collector.ws, Some("two")).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "slot not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Regression (issue 7, the swarm benchmark): every connection held tungstenite's
/// default 128 KiB read buffer, zero-filled on its first read, so 1,000 idle agents
/// cost the collector 140 MiB. Frames far larger than the smaller buffer must still
/// be read whole.
#[tokio::test]
async fn an_idle_connection_costs_little_memory_and_large_frames_still_pass() {
    const CONNECTIONS: u64 = 200;
    let collector = Collector::start().await;
    // One-off allocations (store, workers) happen before the baseline.
    let mut first = collector.connect("first").await;
    let ack = round_trip(&mut first, log_frame(Codec::Lz4, 1, 1, &["warm".into()])).await;
    assert_eq!(ack.status, AckStatus::Ok);
    let before = collector.peak_rss();
    let mut idle = Vec::new();
    for i in 0..CONNECTIONS {
        let mut socket = collector.connect(&format!("idle-{i}")).await;
        // A ping makes the collector read from the connection, which is when the
        // old buffer became resident.
        socket
            .send(Message::Ping(b"hi".to_vec().into()))
            .await
            .unwrap();
        let pong = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap();
        assert!(matches!(pong, Some(Ok(Message::Pong(_)))), "{pong:?}");
        idle.push(socket);
    }
    let per_connection = collector.peak_rss().saturating_sub(before) / CONNECTIONS;
    println!("collector peak RSS growth per idle connection: {per_connection} bytes");
    assert!(
        per_connection < 64 * 1024,
        "{per_connection} bytes per idle connection"
    );

    // 1 MiB uncompressed, 64 times the read buffer.
    let big = log_frame(Codec::None, 2, 1, &["z".repeat(1 << 20)]);
    let ack = round_trip(&mut first, big).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
}
