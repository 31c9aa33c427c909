//! Helpers for the ingest limit tests: a collector with TLS, mutual TLS and short
//! limits; TLS clients; a well-behaved agent that ships batches in the background
//! for the whole of an attack; and a raw WebSocket reader that never answers pings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use monitoring_collector::certs::DevCa;
use monitoring_common::protocol::{AGENT_ID_HEADER, Ack, AckStatus, Codec, INGEST_PATH};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use crate::common::{Collector, log_frame, marker};

/// An agent's WebSocket over TLS.
pub type TlsSocket = WebSocketStream<TlsStream<TcpStream>>;

/// `[server]` keys of every collector here: 2 s to the upgrade request, pings each
/// second, idle after 3 s, two connections per agent.
pub const SERVER: &str = "handshake_timeout_secs = 2\nping_interval_secs = 1\nidle_timeout_secs = 3\nmax_connections_per_agent = 2\n";

/// The collector's CA and a collector requiring client certificates from it.
pub struct Setup {
    pub ca: DevCa,
    pub collector: Collector,
}

/// Starts a collector with TLS, mutual TLS, [`SERVER`] and `rate_limit` as the body
/// of `[server.rate_limit]`.
pub async fn start(rate_limit: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new("limits CA", 1).unwrap();
    let server = ca
        .server(&["localhost".into(), "127.0.0.1".into()], 1)
        .unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (ca_path, cert, key) = (
        write("ca.pem", &ca.pem().cert),
        write("server.pem", &server.cert),
        write("server-key.pem", &server.key),
    );
    let sections = format!(
        "[server.tls]\nenabled = true\ncert = \"{cert}\"\nkey = \"{key}\"\nclient_ca = \"{ca_path}\"\n\n\
         [server.rate_limit]\n{rate_limit}\n"
    );
    let collector = Collector::start_full(SERVER, "", &sections, dir).await;
    Setup { ca, collector }
}

impl Setup {
    /// TCP and a completed TLS handshake with a certificate for `agent`; nothing else.
    pub async fn tls(&self, agent: &str) -> TlsStream<TcpStream> {
        let pem = self.ca.agent(agent, 1).unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.pem().cert.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap(),
            )
            .unwrap();
        let tcp = TcpStream::connect(self.collector.ws).await.unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// TLS, then the WebSocket upgrade as `agent`.
    pub async fn open(&self, agent: &str) -> Result<TlsSocket, tungstenite::Error> {
        let tls = self.tls(agent).await;
        let port = self.collector.ws.port();
        let mut request = format!("wss://localhost:{port}{INGEST_PATH}")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert(AGENT_ID_HEADER, HeaderValue::from_str(agent).unwrap());
        let attempt = tokio_tungstenite::client_async(request, tls);
        tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .expect("websocket handshake timed out")
            .map(|(socket, _)| socket)
    }

    /// The value of a sample line of `/metrics` (`name{labels}`), 0 if absent.
    pub async fn metric(&self, series: &str) -> u64 {
        let text = self.collector.self_metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Sends a frame and reads until its acknowledgement.
pub async fn round_trip(socket: &mut TlsSocket, frame: Vec<u8>) -> Ack {
    socket.send(Message::binary(frame)).await.unwrap();
    next_ack(socket).await
}

/// The next acknowledgement (pings are answered by reading).
pub async fn next_ack(socket: &mut TlsSocket) -> Ack {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("no acknowledgement within 10 s")
            .expect("connection closed")
            .expect("connection failed");
        match message {
            Message::Binary(bytes) => return Ack::decode(&bytes).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// What the well-behaved agent saw.
#[derive(Debug)]
pub struct GoodReport {
    /// Batches acknowledged ok.
    pub acked: u64,
    /// The first thing that went wrong, if anything did.
    pub failure: Option<String>,
}

/// An agent that ships one small batch every 200 ms over one connection, reading
/// (and so answering pings) in between, until stopped.
pub struct GoodAgent {
    stop: CancellationToken,
    task: JoinHandle<GoodReport>,
}

impl GoodAgent {
    /// Connects as `good-agent` and starts shipping.
    pub async fn start(setup: &Setup) -> GoodAgent {
        let mut socket = setup.open("good-agent").await.expect("good agent refused");
        let stop = CancellationToken::new();
        let m = marker("good");
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut report = GoodReport {
                    acked: 0,
                    failure: None,
                };
                for seq in 1.. {
                    let frame = log_frame(Codec::Zstd, 77, seq, &[format!("good {seq} {m}")]);
                    if let Err(e) = socket.send(Message::binary(frame)).await {
                        report.failure = Some(format!("send {seq}: {e}"));
                        return report;
                    }
                    let ack = next_ack(&mut socket).await;
                    if (ack.status, ack.sequence) != (AckStatus::Ok, seq) {
                        report.failure = Some(format!("batch {seq}: {ack:?}"));
                        return report;
                    }
                    report.acked += 1;
                    let pause = tokio::time::sleep(Duration::from_millis(200));
                    tokio::pin!(pause);
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return report,
                            () = &mut pause => break,
                            message = socket.next() => match message {
                                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                                other => {
                                    report.failure = Some(format!("while idle: {other:?}"));
                                    return report;
                                }
                            },
                        }
                    }
                }
                report
            }
        });
        GoodAgent { stop, task }
    }

    /// Stops shipping; asserts that every batch was acknowledged ok and that at
    /// least `min_acked` were.
    pub async fn finish(self, min_acked: u64) -> u64 {
        self.stop.cancel();
        let report = self.task.await.unwrap();
        assert!(report.failure.is_none(), "good agent: {report:?}");
        assert!(report.acked >= min_acked, "good agent: {report:?}");
        report.acked
    }
}

/// A WebSocket spoken by hand: upgraded, then only read, so pings go unanswered.
pub struct RawSocket {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl RawSocket {
    /// TLS, then the upgrade request as `agent`; asserts the 101 answer.
    pub async fn upgrade(setup: &Setup, agent: &str) -> RawSocket {
        let mut stream = setup.tls(agent).await;
        let request = format!(
            "GET {INGEST_PATH} HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\n\
             connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             sec-websocket-version: 13\r\n{AGENT_ID_HEADER}: {agent}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = RawSocket {
            stream,
            buf: Vec::new(),
        };
        let end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(raw.fill().await, "closed during the upgrade");
        };
        let head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw.buf.drain(..end);
        raw
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next frame from the server as (opcode, payload); `None` at end of stream.
    pub async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((header, len)) = parse_header(&self.buf)
                && self.buf.len() >= header + len
            {
                let opcode = self.buf[0] & 0x0F;
                let payload = self.buf[header..header + len].to_vec();
                self.buf.drain(..header + len);
                return Some((opcode, payload));
            }
            if !self.fill().await {
                return None;
            }
        }
    }
}

/// Sends the upgrade request as `agent` by hand and returns the whole answer, for
/// refusals (the collector closes the connection after answering).
pub async fn refused_upgrade(setup: &Setup, agent: &str) -> String {
    let mut stream = setup.tls(agent).await;
    let request = format!(
        "GET {INGEST_PATH} HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\n\
         connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         sec-websocket-version: 13\r\n{AGENT_ID_HEADER}: {agent}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("refused connection still open after 10 s");
    // Without a TLS close_notify the end is an error; what came before counts.
    drop(read);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Header length and payload length of an unmasked frame, once enough is buffered.
fn parse_header(b: &[u8]) -> Option<(usize, usize)> {
    let short = usize::from(*b.get(1)? & 0x7F);
    match short {
        126 => Some((4, usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])))),
        127 => {
            let bytes: [u8; 8] = b.get(2..10)?.try_into().ok()?;
            Some((10, usize::try_from(u64::from_be_bytes(bytes)).ok()?))
        }
        n => Some((2, n)),
    }
}

/// Waits until the peer closes `stream` (EOF or error), at most `within`; returns
/// how long that took from `since`.
pub async fn closed_after(
    stream: &mut TlsStream<TcpStream>,
    since: Instant,
    within: Duration,
) -> Duration {
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(within, stream.read(&mut buf))
        .await
        .expect("connection still open");
    match read {
        Ok(0) | Err(_) => since.elapsed(),
        // Nothing, not even an HTTP error, is sent to a client that sent nothing.
        Ok(n) => panic!("unexpected {:?}", String::from_utf8_lossy(&buf[..n])),
    }
}
