//! `https://` URLs: the client speaks TLS and checks the server's certificate
//! against the platform's trust store, so a self-signed server is refused (the
//! request never reaches it) rather than trusted.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use super::super::client::{ClickhouseError, Client, Endpoint};
use super::*;

#[test]
fn https_servers_need_a_trusted_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, socket);
        // The handshake fails on the client's side; whatever arrives is not a request.
        let mut buf = [0u8; 1024];
        let read = tls.read(&mut buf).unwrap_or(0);
        drop(tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1"));
        read
    });
    let endpoint = Endpoint::parse(&format!("https://localhost:{port}/?database=x")).unwrap();
    let client = Client::new(endpoint, Duration::from_secs(10), 1);
    let error = client.query("SELECT 1 FORMAT RowBinary").unwrap_err();
    assert!(
        matches!(error, ClickhouseError::Transport { .. }),
        "{error}"
    );
    let text = format!("{error:?}");
    assert!(
        text.contains("UnknownIssuer") || text.contains("certificate"),
        "{text}"
    );
    assert_eq!(server.join().unwrap(), 0, "no request reached the server");
}
