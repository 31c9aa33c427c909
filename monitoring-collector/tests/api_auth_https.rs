//! REST API authentication over HTTPS (`[api.tls]`, certificates from a development
//! CA made at test time): the session cookie gets `Secure`, and works.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::sync::Arc;
use std::time::Duration;

use monitoring_collector::certs::DevCa;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 exchange over TLS: the raw response.
async fn https(
    tls: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    request: &str,
) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    // A close without close_notify is an error after the data; the data is kept.
    drop(stream.read_to_string(&mut response).await);
    response
}

#[tokio::test]
async fn over_https_the_session_cookie_is_secure() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new("api CA", 1).unwrap();
    let server = ca.server(&["localhost".into()], 1).unwrap();
    let (cert, key) = (dir.path().join("api.pem"), dir.path().join("api-key.pem"));
    std::fs::write(&cert, &server.cert).unwrap();
    std::fs::write(&key, &server.key).unwrap();
    let config_text = format!(
        "[server]\nwebsocket_addr = \"127.0.0.1:0\"\n\n\
         [api]\naddr = \"127.0.0.1:0\"\n\n\
         [api.tls]\nenabled = true\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [api.auth]\nusers_file = \"{}\"\n\n\
         [storage]\npath = \"{}\"\n",
        cert.display(),
        key.display(),
        dir.path().join("users.toml").display(),
        dir.path().join("store").display()
    );
    let config_path = common::write_config(dir.path(), "collector.toml", &config_text);
    // The user is added by the real CLI; the collector runs in-process, where the
    // port it bound can be asked for.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monitoring-collector"))
        .args([
            "user",
            "add",
            "--name",
            "dave",
            "--role",
            "read",
            "--password-stdin",
        ])
        .arg("--config")
        .arg(&config_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"dave's long password\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let config = monitoring_collector::config::Config::load(&config_path).unwrap();
    let collector = monitoring_collector::Server::bind(config).await.unwrap();
    let addr = collector.api_addr();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(collector.serve(shutdown.clone()));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().cert.as_bytes()).unwrap())
        .unwrap();
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let body = r#"{"username": "dave", "password": "dave's long password"}"#;
    let response = https(
        &tls,
        addr,
        &format!(
            "POST /api/v1/login HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let cookie = response
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {response}"));
    assert!(
        cookie.ends_with("; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200; Secure"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap();

    let response = https(
        &tls,
        addr,
        &format!("GET /api/v1/whoami HTTP/1.1\r\nhost: localhost\r\ncookie: {session}\r\nconnection: close\r\n\r\n"),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(r#"{"name":"dave","role":"read","kind":"user"}"#),
        "{response}"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
