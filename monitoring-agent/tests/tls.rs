//! The agent's `wss://` connect step against an in-process TLS WebSocket server
//! with certificates made at test time: mutual TLS works, and each TLS failure
//! (unknown CA, expired certificate, name mismatch) is a `ConnectError::Tls` whose
//! text says why.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use monitoring_agent::transport::connect::connect;
use monitoring_agent::transport::tls::TlsClientConfig;
use monitoring_agent::transport::{ConnectError, Endpoint};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: String,
}

struct Pem {
    cert: String,
    key: String,
}

fn window(params: &mut CertificateParams, expired: bool) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let day = Duration::from_secs(86_400);
    if expired {
        params.not_before = epoch + now - day * 2;
        params.not_after = epoch + now - day;
    } else {
        params.not_before = epoch + now - day;
        params.not_after = epoch + now + day;
    }
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    window(&mut params, false);
    let cert = params.self_signed(&key).unwrap().pem();
    Ca {
        issuer: Issuer::new(params, key),
        cert,
    }
}

fn leaf(ca: &Ca, name: &str, server: bool, expired: bool) -> Pem {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    window(&mut params, expired);
    let cert = params.signed_by(&key, &ca.issuer).unwrap().pem();
    Pem {
        cert,
        key: key.serialize_pem(),
    }
}

/// A TLS acceptor presenting `server` and requiring client certificates from
/// `client_ca`.
fn acceptor(server: &Pem, client_ca: &Ca) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(client_ca.cert.as_bytes()).unwrap())
        .unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(server.cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap(),
        )
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS WebSocket server requiring client certificates from `client_ca`; reports
/// each connection made.
async fn serve(server: &Pem, client_ca: &Ca) -> (SocketAddr, mpsc::Receiver<()>) {
    let acceptor = acceptor(server, client_ca);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                tx.send(()).await.unwrap();
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (addr, rx)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn endpoint(url: String, tls: TlsClientConfig) -> Endpoint {
    Endpoint {
        url,
        agent_id: "web-1".into(),
        auth_token: None,
        connect_timeout: Duration::from_secs(5),
        tls,
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            ca: ca("collector CA"),
        }
    }

    /// `[collector.tls]` trusting `trusted` with a client certificate from our CA.
    fn tls(&self, trusted: &Ca, server_name: Option<&str>) -> TlsClientConfig {
        let client = leaf(&self.ca, "web-1", false, false);
        TlsClientConfig {
            ca: Some(write(self.dir.path(), "trusted.pem", &trusted.cert)),
            cert: Some(write(self.dir.path(), "client.pem", &client.cert)),
            key: Some(write(self.dir.path(), "client-key.pem", &client.key)),
            server_name: server_name.map(str::to_owned),
        }
    }
}

fn tls_error(result: Result<impl Sized, ConnectError>) -> String {
    match result {
        Ok(_) => panic!("connected"),
        Err(error @ ConnectError::Tls { .. }) => error.to_string(),
        Err(other) => panic!("not a TLS error: {other}"),
    }
}

#[tokio::test]
async fn mutual_tls_connects() {
    let f = Fixture::new();
    let server = leaf(&f.ca, "localhost", true, false);
    let (addr, mut connected) = serve(&server, &f.ca).await;
    let url = format!("wss://localhost:{}/ingest", addr.port());
    connect(&endpoint(url, f.tls(&f.ca, None))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), connected.recv())
        .await
        .unwrap()
        .unwrap();
    // server_name overrides the host of the URL.
    let url = format!("wss://127.0.0.1:{}/ingest", addr.port());
    connect(&endpoint(url, f.tls(&f.ca, Some("localhost"))))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unknown_ca_is_a_clear_tls_error() {
    let f = Fixture::new();
    let other = ca("other CA");
    let server = leaf(&other, "localhost", true, false);
    let (addr, _connected) = serve(&server, &f.ca).await;
    let url = format!("wss://localhost:{}/ingest", addr.port());
    let err = tls_error(connect(&endpoint(url, f.tls(&f.ca, None))).await);
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn an_expired_server_certificate_is_a_clear_tls_error() {
    let f = Fixture::new();
    let server = leaf(&f.ca, "localhost", true, true);
    let (addr, _connected) = serve(&server, &f.ca).await;
    let url = format!("wss://localhost:{}/ingest", addr.port());
    let err = tls_error(connect(&endpoint(url, f.tls(&f.ca, None))).await);
    assert!(err.contains("expired"), "{err}");
}

#[tokio::test]
async fn a_name_mismatch_is_a_clear_tls_error() {
    let f = Fixture::new();
    let server = leaf(&f.ca, "collector.example", true, false);
    let (addr, _connected) = serve(&server, &f.ca).await;
    let url = format!("wss://localhost:{}/ingest", addr.port());
    let err = tls_error(connect(&endpoint(url, f.tls(&f.ca, None))).await);
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for"),
        "{err}"
    );
}

#[tokio::test]
async fn wss_without_a_ca_is_a_clear_tls_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "wss://localhost:{}/ingest",
        listener.local_addr().unwrap().port()
    );
    let err = tls_error(connect(&endpoint(url, TlsClientConfig::default())).await);
    assert!(err.contains("collector.tls.ca"), "{err}");
}

/// An HTTPS server requiring client certificates from `client_ca` and answering
/// every request with a small exposition.
async fn serve_exposition(server: &Pem, client_ca: &Ca) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = acceptor(server, client_ca);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "# TYPE secure_up gauge\nsecure_up 1\n";
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                tls.write_all(response.as_bytes()).await.ok();
                tls.shutdown().await.ok();
            });
        }
    });
    addr
}

#[tokio::test]
async fn prometheus_targets_are_scraped_over_mutual_tls_and_tls_failures_say_why() {
    use monitoring_agent::collectors::metrics::prometheus::{ScrapeConfig, Target};
    let dir = tempfile::tempdir().unwrap();
    let exporters = ca("exporters");
    let other = ca("someone else");
    let server = leaf(&exporters, "localhost", true, false);
    let client = leaf(&exporters, "web-1", false, false);
    let addr = serve_exposition(&server, &exporters).await;
    let ca_file = write(dir.path(), "ca.pem", &exporters.cert);
    let other_ca = write(dir.path(), "other.pem", &other.cert);
    let cert = write(dir.path(), "client.pem", &client.cert);
    let key = write(dir.path(), "client-key.pem", &client.key);
    let target = |tls: String| {
        let config: ScrapeConfig = toml::from_str(&format!(
            "url = \"https://localhost:{}/metrics\"\ntimeout_secs = 5\n[tls]\n{tls}",
            addr.port()
        ))
        .unwrap();
        assert!(
            config.validate("t").is_empty(),
            "{:?}",
            config.validate("t")
        );
        Target::new(config, &Default::default())
    };
    let tls = format!("ca = {ca_file:?}\ncert = {cert:?}\nkey = {key:?}\n");
    let (events, error) = target(tls).scrape().await;
    assert_eq!(error, None);
    assert!(
        events.iter().any(
            |e| matches!(&e.kind, monitoring_common::EventKind::Metric(m) if m.name == "secure_up")
        ),
        "{events:?}"
    );
    // Without a client certificate the server refuses the handshake.
    let (_, error) = target(format!("ca = {ca_file:?}\n")).scrape().await;
    assert!(
        error.is_some(),
        "a scrape without a client certificate succeeded"
    );
    // A server certificate from another CA is refused by the agent, saying why.
    let tls = format!("ca = {other_ca:?}\ncert = {cert:?}\nkey = {key:?}\n");
    let (_, error) = target(tls).scrape().await;
    let error = error.unwrap();
    assert!(error.contains("UnknownIssuer"), "{error}");
}
