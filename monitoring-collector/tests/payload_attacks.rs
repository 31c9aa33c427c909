//! Hostile payloads over real TLS with mutual TLS: decompression bombs in every codec
//! and messages over the size limits. Each is refused (a `rejected` acknowledgement,
//! or for a message past the hard cap a closed connection) without the collector
//! inflating or buffering it, while a well-behaved agent on the same collector keeps
//! getting every batch acknowledged and stored.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use common::tls::{Client, Pki, Refusal, open_wss};
use common::{Collector, Socket, log_frame, marker, round_trip};
use futures_util::{SinkExt, StreamExt};
use monitoring_common::protocol::{AckStatus, Codec, FrameHeader, PROTOCOL_VERSION};
use tokio_tungstenite::tungstenite::Message;

const MIB: usize = 1 << 20;

/// A collector requiring client certificates from `pki`, with `limits` as the body of
/// `[server.limits]`.
async fn start(pki: &Pki, limits: &str) -> Collector {
    let dir = tempfile::tempdir().unwrap();
    let tls = pki.server_section(dir.path());
    Collector::start_full("", limits, &tls, dir).await
}

async fn connect(pki: &Pki, collector: &Collector, agent: &str) -> Result<Socket, Refusal> {
    let cert = pki.agent(agent);
    let client = Client {
        cert: Some(&cert),
        agent_header: Some(agent),
        ..Client::default()
    };
    open_wss(collector.ws, &pki.ca, &client).await
}

/// A frame whose header declares `declared` uncompressed bytes but whose payload,
/// `inflated` zero bytes compressed with `codec`, inflates to far more.
fn bomb(codec: Codec, sequence: u64, declared: u32, inflated: usize) -> Vec<u8> {
    let header = FrameHeader {
        version: PROTOCOL_VERSION,
        codec,
        stream_id: 66,
        sequence,
        event_count: 1,
        uncompressed_len: declared,
    };
    let mut frame = Vec::new();
    header.write(&mut frame);
    codec.compress(&vec![0u8; inflated], &mut frame);
    frame
}

/// The well-behaved agent ships batch `seq` and gets it acknowledged.
async fn good_agent_ships(agent: &mut Socket, m: &str, seq: u64) {
    let frame = log_frame(Codec::Lz4, 1, seq, &[format!("{m} good {seq}")]);
    let ack = round_trip(agent, frame).await;
    assert_eq!((ack.status, ack.sequence), (AckStatus::Ok, seq), "{ack:?}");
}

async fn stored(collector: &Collector, m: &str) -> usize {
    let (status, body) = collector
        .get(&format!("/api/v1/logs?q={m}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["logs"].as_array().unwrap().len()
}

#[tokio::test]
async fn decompression_bombs_in_every_codec_are_rejected_without_inflating() {
    let pki = Pki::new();
    let collector = start(&pki, "").await;
    let mut good = connect(&pki, &collector, "good").await.unwrap();
    let mut attacker = connect(&pki, &collector, "attacker").await.unwrap();
    let m = marker("bombs");
    let mut seq = 0;
    let mut bombs = 0;
    for codec in [Codec::Snappy, Codec::Lz4, Codec::Gzip, Codec::Zstd] {
        // Snappy cannot compress better than about 21:1, so its bomb is smaller to fit
        // in one 8 MiB frame; the others inflate to 1 GiB.
        let inflated = if codec == Codec::Snappy {
            128 * MIB
        } else {
            1024 * MIB
        };
        // Declaring 1 KiB, and declaring the most the limits allow (64 MiB).
        for declared in [1024, 64 * MIB as u32] {
            let frame = bomb(codec, bombs, declared, inflated);
            assert!(
                frame.len() < 8 * MIB,
                "{codec:?} bomb is {} bytes",
                frame.len()
            );
            let ack = round_trip(&mut attacker, frame).await;
            assert_eq!(ack.status, AckStatus::Rejected, "{codec:?}: {ack:?}");
            assert_eq!((ack.stream_id, ack.sequence), (66, bombs), "{ack:?}");
            assert!(
                ack.reason
                    .contains(&format!("declared length of {declared} bytes")),
                "{codec:?}: {}",
                ack.reason
            );
            bombs += 1;
            seq += 1;
            good_agent_ships(&mut good, &m, seq).await;
        }
    }
    // The attacker's connection survives its rejections; only its bombs were refused.
    let ack = round_trip(
        &mut attacker,
        log_frame(Codec::Zstd, 67, 1, &[format!("{m} late")]),
    )
    .await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");

    assert_eq!(stored(&collector, &m).await, seq as usize + 1);
    let metrics = collector.self_metrics().await;
    let line = format!("monitoring_ingest_batches_rejected_total{{reason=\"inflated\"}} {bombs}");
    assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    // Eight bombs of up to 1 GiB each: inflating even one would show here. What is
    // allowed is bounded by the declared length (at most 64 MiB per worker).
    let peak = collector.peak_rss();
    assert!(
        peak < 400 * MIB as u64,
        "collector peak RSS {} MiB",
        peak >> 20
    );
}

#[tokio::test]
async fn messages_over_the_size_limits_are_refused_over_tls() {
    let pki = Pki::new();
    // A frame limit of 64 KiB: messages up to 2 × 64 KiB + 1 MiB are answered, larger
    // ones close the connection.
    let collector = start(&pki, "max_frame_bytes = 65536\nmax_events_per_batch = 100").await;
    let mut good = connect(&pki, &collector, "good").await.unwrap();
    let m = marker("oversize");
    good_agent_ships(&mut good, &m, 1).await;

    let mut attacker = connect(&pki, &collector, "attacker").await.unwrap();
    let oversize = log_frame(Codec::None, 5, 1, &["x".repeat(100_000)]);
    let ack = round_trip(&mut attacker, oversize).await;
    assert_eq!(ack.status, AckStatus::Rejected, "{ack:?}");
    assert!(
        ack.reason.contains("exceeds the limit of 65536 bytes"),
        "{ack:?}"
    );
    let many: Vec<String> = (0..101).map(|i| format!("{m} many {i}")).collect();
    let ack = round_trip(&mut attacker, log_frame(Codec::Lz4, 5, 2, &many)).await;
    assert_eq!(ack.status, AckStatus::Rejected, "{ack:?}");
    assert!(ack.reason.contains("101 events"), "{ack:?}");
    good_agent_ships(&mut good, &m, 2).await;

    // Past the hard cap: the WebSocket layer closes the connection instead of reading.
    let huge = vec![0x4d; 2 * 65_536 + MIB + 1];
    drop(attacker.send(Message::binary(huge)).await);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match attacker.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "connection not closed after a message over the hard cap"
    );
    good_agent_ships(&mut good, &m, 3).await;
    assert_eq!(stored(&collector, &m).await, 3);
    let metrics = collector.self_metrics().await;
    let line = "monitoring_ingest_batches_rejected_total{reason=\"limit\"} 2";
    assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    let line = "monitoring_ingest_connections_closed_total{reason=\"error\"} 1";
    assert!(metrics.contains(line), "{line} missing:\n{metrics}");
}
