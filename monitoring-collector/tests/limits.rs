//! Ingest limits against the real collector binary over TLS with mutual TLS: the
//! deadline to the upgrade request, the idle timeout with pings, connections per
//! agent and the per-agent rate limit. Each attack is refused while a well-behaved
//! agent on the same collector keeps getting every batch acknowledged.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;
#[path = "limits/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Collector, log_frame, marker};
use futures_util::{SinkExt, StreamExt};
use monitoring_common::protocol::{AckStatus, Codec};
use support::{GoodAgent, RawSocket, closed_after, refused_upgrade, round_trip, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, Message};

const UPGRADE_TIMEOUT: &str =
    "monitoring_ingest_connections_refused_total{reason=\"upgrade_timeout\"}";

#[tokio::test]
async fn a_client_that_sends_nothing_after_tls_is_dropped_at_the_deadline() {
    let setup = start("").await;
    let good = GoodAgent::start(&setup).await;
    let started = Instant::now();
    let mut silent = setup.tls("silent-agent").await;
    let waited = closed_after(&mut silent, started, Duration::from_secs(10)).await;
    // The deadline (2 s) runs from accept, so it includes the handshake.
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(setup.metric(UPGRADE_TIMEOUT).await, 1);
    good.finish(3).await;
}

#[tokio::test]
async fn a_client_that_drips_its_request_is_dropped_at_the_deadline() {
    let setup = start("").await;
    let good = GoodAgent::start(&setup).await;
    let started = Instant::now();
    let mut drip = setup.tls("drip-agent").await;
    let request = b"GET /ingest HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\n";
    let mut sent = 0;
    let mut buf = [0u8; 256];
    let waited = loop {
        let tick = tokio::time::sleep(Duration::from_millis(500));
        tokio::select! {
            read = drip.read(&mut buf) => match read {
                Ok(0) | Err(_) => break started.elapsed(),
                Ok(n) => panic!("unexpected {:?}", String::from_utf8_lossy(&buf[..n])),
            },
            () = tick => {
                assert!(sent < request.len(), "still open after {:?}", started.elapsed());
                if drip.write_all(&request[sent..=sent]).await.is_err() {
                    break started.elapsed();
                }
                sent += 1;
            }
        }
    };
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!((3..=10).contains(&sent), "{sent} bytes dripped");
    assert_eq!(setup.metric(UPGRADE_TIMEOUT).await, 1);
    good.finish(3).await;
}

#[tokio::test]
async fn a_plain_tcp_client_with_half_a_request_is_dropped_at_the_deadline() {
    // The same deadline without TLS.
    let collector = Collector::start_with("handshake_timeout_secs = 1", "").await;
    let started = Instant::now();
    let mut half = tokio::net::TcpStream::connect(collector.ws).await.unwrap();
    half.write_all(b"GET /ingest HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut agent = collector.connect("plain-agent").await;
    let m = marker("plain-deadline");
    let ack = common::round_trip(&mut agent, log_frame(Codec::None, 1, 1, &[m])).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), half.read(&mut buf))
        .await
        .expect("half-sent request still open after 10 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    let metrics = collector.self_metrics().await;
    assert!(
        metrics.contains(&format!("{UPGRADE_TIMEOUT} 1")),
        "{metrics}"
    );
    // The agent connected meanwhile is unaffected by the deadline.
    let ack = common::round_trip(&mut agent, log_frame(Codec::None, 1, 2, &["x".into()])).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
}

#[tokio::test]
async fn an_idle_client_that_ignores_pings_is_closed_and_one_that_answers_stays() {
    let setup = start("").await;
    let good = GoodAgent::start(&setup).await;

    // Answers pings (tungstenite does while it is read) but sends nothing itself
    // for longer than the idle timeout.
    let mut answering = setup.open("answering-agent").await.unwrap();
    let answering = tokio::spawn(async move {
        let quiet_until = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut pings = 0;
        loop {
            match tokio::time::timeout_at(quiet_until, answering.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
                Ok(other) => panic!("answering client got {other:?}"),
            }
        }
        let m = marker("answering");
        let ack = round_trip(&mut answering, log_frame(Codec::None, 3, 1, &[m])).await;
        assert_eq!((ack.status, ack.sequence), (AckStatus::Ok, 1), "{ack:?}");
        pings
    });

    let started = Instant::now();
    let mut mute = RawSocket::upgrade(&setup, "mute-agent").await;
    let mut pings = 0;
    let (code, reason, waited) = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), mute.frame())
            .await
            .expect("mute client still open after 10 s")
            .expect("closed without a close frame");
        match frame {
            (0x9, _) => pings += 1,
            (0x8, payload) => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
                break (code, reason, started.elapsed());
            }
            other => panic!("unexpected frame {other:?}"),
        }
    };
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("idle"), "{reason}");
    assert!(pings >= 2, "{pings} pings before the close");
    assert!(waited >= Duration::from_millis(2900), "{waited:?}");
    assert!(waited < Duration::from_secs(7), "{waited:?}");
    assert!(mute.frame().await.is_none(), "more after the close frame");

    let answered = answering.await.unwrap();
    assert!(answered >= 3, "{answered} pings in 5 s");
    let idle = "monitoring_ingest_connections_closed_total{reason=\"idle\"}";
    assert_eq!(setup.metric(idle).await, 1);
    good.finish(10).await;
}

#[tokio::test]
async fn an_agents_extra_connection_is_refused_with_429_while_others_connect() {
    let setup = start("").await;
    let good = GoodAgent::start(&setup).await;
    let mut first = setup.open("busy-agent").await.unwrap();
    let _second = setup.open("busy-agent").await.unwrap();
    let refused = setup.open("busy-agent").await.map(|_| ()).unwrap_err();
    let tungstenite::Error::Http(response) = refused else {
        panic!("expected an HTTP refusal, got {refused}");
    };
    assert_eq!(response.status(), 429);
    // The same by hand, to read the JSON error whole.
    let answer = refused_upgrade(&setup, "busy-agent").await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("max_connections_per_agent"), "{error}");

    // Another agent is not affected.
    let mut other = setup.open("other-agent").await.unwrap();
    let ack = round_trip(&mut other, log_frame(Codec::None, 5, 1, &["o".into()])).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
    let agent_limit = "monitoring_ingest_connections_refused_total{reason=\"agent_limit\"}";
    assert_eq!(setup.metric(agent_limit).await, 2);

    // Closing a connection gives its place back (once the collector has seen it go).
    first.close(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        match setup.open("busy-agent").await {
            Ok(socket) => break socket,
            Err(error) => assert!(Instant::now() < deadline, "place not released: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ack = round_trip(&mut again, log_frame(Codec::None, 6, 1, &["b".into()])).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
    good.finish(1).await;
}

#[tokio::test]
async fn an_agent_flooding_past_its_rate_limit_is_told_to_retry_and_stored_once() {
    // 200 events/s with a one-second burst; the flood is 20 batches of 50 events.
    let setup = start("events_per_sec = 200\nbytes_per_sec = 0\nburst_secs = 1").await;
    let good = GoodAgent::start(&setup).await;
    let mut flood = setup.open("flood-agent").await.unwrap();
    let m = marker("flood");
    let frames: BTreeMap<u64, Vec<u8>> = (1..=20)
        .map(|seq| {
            let lines: Vec<String> = (0..50).map(|i| format!("b{seq} e{i} {m}")).collect();
            (seq, log_frame(Codec::Lz4, 9, seq, &lines))
        })
        .collect();
    for frame in frames.values() {
        flood.send(Message::binary(frame.clone())).await.unwrap();
    }
    let mut done = BTreeSet::new();
    let mut retries = 0u64;
    // Resends due, by time.
    let mut due: Vec<(tokio::time::Instant, u64)> = Vec::new();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    while done.len() < frames.len() {
        let next = due.iter().map(|(t, _)| *t).min().unwrap_or(give_up);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {
                assert!(tokio::time::Instant::now() < give_up, "flood not delivered in 60 s");
                let now = tokio::time::Instant::now();
                let (ready, later): (Vec<_>, Vec<_>) = due.into_iter().partition(|(t, _)| *t <= now);
                due = later;
                for (_, seq) in ready {
                    flood.send(Message::binary(frames[&seq].clone())).await.unwrap();
                }
            }
            message = flood.next() => {
                let Message::Binary(bytes) = message.unwrap().unwrap() else { continue };
                let ack = monitoring_common::protocol::Ack::decode(&bytes).unwrap();
                match ack.status {
                    AckStatus::Ok => assert!(done.insert(ack.sequence), "acked twice: {ack:?}"),
                    AckStatus::RetryLater => {
                        retries += 1;
                        // 50 events at 200/s fit after at most 250 ms (rounded up).
                        assert!((50..=251).contains(&ack.retry_after_ms), "{ack:?}");
                        assert!(ack.reason.contains("rate limit"), "{ack:?}");
                        let at = tokio::time::Instant::now()
                            + Duration::from_millis(u64::from(ack.retry_after_ms));
                        due.push((at, ack.sequence));
                    }
                    AckStatus::Rejected => panic!("{ack:?}"),
                }
            }
        }
    }
    // 1000 events at 200/s after a 200-event burst cannot pass in one go.
    assert!(retries >= 10, "{retries} retries");
    let retried = "monitoring_ingest_batches_retried_total{reason=\"rate_limited\"}";
    assert_eq!(setup.metric(retried).await, retries);

    // The good agent kept shipping during the flood, and none of its batches waited.
    let good_acked = good.finish(10).await;

    // Every flood event is stored exactly once.
    let (status, body) = setup
        .collector
        .get(&format!("/api/v1/logs?q={m}&limit=5000"))
        .await;
    assert_eq!(status, 200, "{body}");
    let messages: Vec<&str> = body["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    let distinct: BTreeSet<&str> = messages.iter().copied().collect();
    assert_eq!((messages.len(), distinct.len()), (1000, 1000));
    let committed = setup
        .metric("monitoring_ingest_batches_committed_total")
        .await;
    assert_eq!(committed, 20 + good_acked);
    assert_eq!(
        setup
            .metric("monitoring_ingest_batches_duplicate_total")
            .await,
        0
    );
}
