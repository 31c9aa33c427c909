//! Ingest over TLS with mutual TLS: certificates are made at test time with rcgen
//! ([`monitoring_collector::certs::DevCa`]); each attack is refused while a
//! well-behaved agent on the same collector keeps getting its batches acknowledged.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::tls::{Client, Pki, client_config, open_wss};
use common::{Collector, Socket, log_frame, marker, round_trip};
use monitoring_collector::certs::{DevCa, Pem};
use monitoring_common::protocol::{AckStatus, Codec};
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The collector's PKI and a running collector that requires client certificates.
struct Setup {
    pki: Pki,
    collector: Collector,
}

async fn start() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let sections = pki.server_section(dir.path());
    let collector = Collector::start_full("handshake_timeout_secs = 2", "", &sections, dir).await;
    Setup { pki, collector }
}

/// TLS, then the WebSocket upgrade as `agent`. Any failure is returned as text.
async fn open(setup: &Setup, client: Option<&Pem>, agent: &str) -> Result<Socket, String> {
    let client = Client {
        cert: client,
        agent_header: Some(agent),
        ..Client::default()
    };
    open_wss(setup.collector.ws, &setup.pki.ca, &client)
        .await
        .map_err(|refusal| format!("{refusal:?}"))
}

/// A well-behaved agent with a valid certificate ships a batch and gets it acked.
async fn assert_good_agent_ships(setup: &Setup, test: &str) {
    let agent = setup.pki.agent("good-agent");
    let mut socket = open(setup, Some(&agent), "good-agent")
        .await
        .unwrap_or_else(|e| panic!("good agent refused: {e}\n{}", setup.collector.log()));
    let m = marker(test);
    let ack = round_trip(
        &mut socket,
        log_frame(Codec::None, 7, 1, &[format!("line {m}")]),
    )
    .await;
    assert_eq!((ack.status, ack.sequence), (AckStatus::Ok, 1), "{ack:?}");
}

async fn refused_count(collector: &Collector, reason: &str) -> bool {
    let metrics = collector.self_metrics().await;
    metrics
        .lines()
        .any(|l| l.contains("refused") && l.contains(&format!("reason=\"{reason}\"")))
}

#[tokio::test]
async fn an_agent_with_a_valid_certificate_ships_over_wss() {
    let setup = start().await;
    assert_good_agent_ships(&setup, "valid-cert").await;
    assert!(
        setup.collector.log().contains("wss://"),
        "{}",
        setup.collector.log()
    );
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let setup = start().await;
    let err = open(&setup, None, "good-agent")
        .await
        .map(|_| panic!("connected without a client certificate"))
        .unwrap_err();
    assert!(!err.is_empty());
    assert_good_agent_ships(&setup, "no-cert").await;
    assert!(refused_count(&setup.collector, "tls_handshake").await);
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let setup = start().await;
    let other = DevCa::new("other CA", 1).unwrap();
    let forged = other.agent("good-agent", 1).unwrap();
    let err = open(&setup, Some(&forged), "good-agent")
        .await
        .map(|_| panic!("connected with another CA's certificate"))
        .unwrap_err();
    assert!(!err.is_empty());
    assert_good_agent_ships(&setup, "other-ca").await;
    assert!(
        setup.collector.log().contains("UnknownIssuer"),
        "{}",
        setup.collector.log()
    );
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused() {
    let setup = start().await;
    let expired = setup
        .pki
        .ca
        .expired_agent("good-agent", Duration::from_secs(3600))
        .unwrap();
    let err = open(&setup, Some(&expired), "good-agent")
        .await
        .map(|_| panic!("connected with an expired certificate"))
        .unwrap_err();
    assert!(!err.is_empty());
    assert_good_agent_ships(&setup, "expired").await;
    assert!(
        setup.collector.log().contains("certificate expired"),
        "{}",
        setup.collector.log()
    );
}

#[tokio::test]
async fn a_certificate_for_another_agent_is_refused() {
    let setup = start().await;
    let other = setup.pki.agent("agent-a");
    let err = open(&setup, Some(&other), "agent-b")
        .await
        .map(|_| panic!("agent-a's certificate wrote as agent-b"))
        .unwrap_err();
    assert!(err.contains("Http(401"), "{err}");
    assert_good_agent_ships(&setup, "mismatch").await;
}

#[tokio::test]
async fn a_client_that_never_sends_a_client_hello_is_dropped() {
    let setup = start().await;
    let started = Instant::now();
    let mut idle = TcpStream::connect(setup.collector.ws).await.unwrap();
    // Meanwhile other agents are served: handshakes do not wait for each other.
    assert_good_agent_ships(&setup, "slowloris").await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("idle connection still open after 10 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert!(refused_count(&setup.collector, "tls_timeout").await);
}

#[test]
fn certs_command_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_monitoring-collector"))
            .args(["certs", "--out"])
            .arg(dir.path())
            .args(["--agent-id", "web-1", "--agent-id", "web-2"])
            .args(extra)
            .output()
            .unwrap()
    };
    let first = run(&[]);
    assert!(first.status.success(), "{first:?}");
    for name in [
        "ca.pem",
        "server-key.pem",
        "agent-web-1.pem",
        "agent-web-2-key.pem",
    ] {
        assert!(Path::new(&dir.path().join(name)).exists(), "{name}");
    }
    let second = run(&[]);
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(String::from_utf8_lossy(&second.stderr).contains("--force"));
    assert!(run(&["--force"]).status.success());
}

#[tokio::test]
async fn the_api_serves_https_when_configured() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new("api CA", 1).unwrap();
    let server = ca.server(&["localhost".into()], 1).unwrap();
    let (cert, key) = (dir.path().join("api.pem"), dir.path().join("api-key.pem"));
    std::fs::write(&cert, &server.cert).unwrap();
    std::fs::write(&key, &server.key).unwrap();
    let mut config = monitoring_collector::config::Config::default();
    config.server.websocket_addr = "127.0.0.1:0".parse().unwrap();
    config.api.addr = "127.0.0.1:0".parse().unwrap();
    config.api.tls.enabled = true;
    config.api.tls.cert = Some(cert);
    config.api.tls.key = Some(key);
    config.storage.path = dir.path().join("store");
    let collector = monitoring_collector::Server::bind(config).await.unwrap();
    let addr = collector.api_addr();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(collector.serve(shutdown.clone()));

    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = TlsConnector::from(client_config(&ca, None));
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    drop(tls.read_to_string(&mut response).await);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    drop(tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut buf)).await);
    assert!(!buf.starts_with(b"HTTP/1.1 200"));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
