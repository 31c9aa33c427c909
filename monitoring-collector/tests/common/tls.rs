//! TLS for the integration tests: a development CA made at test time, the
//! `[server.tls]` section that turns on TLS and mutual TLS with it, and an ingest
//! client that connects over `wss://` with (or without) a client certificate, a bearer
//! token and an agent id header. The socket type is the plain tests' [`Socket`], so
//! every frame helper works over TLS too.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use monitoring_collector::certs::{DevCa, Pem};
use monitoring_common::protocol::{AGENT_ID_HEADER, INGEST_PATH};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::Socket;

/// The name the test server certificate is issued for and clients verify.
pub const SERVER_NAME: &str = "localhost";

/// A test PKI: the CA that signs the collector's certificate and agents' certificates.
pub struct Pki {
    /// The CA.
    pub ca: DevCa,
}

impl Pki {
    /// A new CA valid for a day.
    pub fn new() -> Pki {
        Pki {
            ca: DevCa::new("test CA", 1).unwrap(),
        }
    }

    /// Writes the server certificate, its key and the CA into `dir` and returns the
    /// `[server.tls]` section requiring client certificates from this CA.
    pub fn server_section(&self, dir: &Path) -> String {
        let server = self
            .ca
            .server(&[SERVER_NAME.into(), "127.0.0.1".into()], 1)
            .unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (ca, cert, key) = (
            write("ca.pem", &self.ca.pem().cert),
            write("server.pem", &server.cert),
            write("server-key.pem", &server.key),
        );
        format!(
            "[server.tls]\nenabled = true\ncert = \"{cert}\"\nkey = \"{key}\"\nclient_ca = \"{ca}\"\n"
        )
    }

    /// A client certificate for `agent`, valid for a day.
    pub fn agent(&self, agent: &str) -> Pem {
        self.ca.agent(agent, 1).unwrap()
    }
}

/// A rustls client trusting `ca`, presenting `client` when given.
pub fn client_config(ca: &DevCa, client: Option<&Pem>) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().cert.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(pem) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    Arc::new(config)
}

/// Why a `wss://` connection was not opened.
#[derive(Debug)]
pub enum Refusal {
    /// The server answered the upgrade with this status and body.
    Http(u16, String),
    /// TLS or the connection failed before any HTTP answer.
    Transport(String),
}

/// What an ingest client presents.
#[derive(Default)]
pub struct Client<'a> {
    /// Client certificate for mutual TLS.
    pub cert: Option<&'a Pem>,
    /// Bearer token for the `Authorization` header.
    pub token: Option<&'a str>,
    /// `x-monitoring-agent-id` header.
    pub agent_header: Option<&'a str>,
    /// Appended to the URL (e.g. `?token=...`).
    pub query: &'a str,
}

/// Opens `wss://<addr>/ingest` trusting `ca`, as `client` (within 10 s).
pub async fn open_wss(
    addr: SocketAddr,
    ca: &DevCa,
    client: &Client<'_>,
) -> Result<Socket, Refusal> {
    let url = format!(
        "wss://{SERVER_NAME}:{}{INGEST_PATH}{}",
        addr.port(),
        client.query
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = client.token {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    if let Some(agent) = client.agent_header {
        request
            .headers_mut()
            .insert(AGENT_ID_HEADER, HeaderValue::from_str(agent).unwrap());
    }
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Refusal::Transport(e.to_string()))?;
    let connector = Connector::Rustls(client_config(ca, client.cert));
    let attempt =
        tokio_tungstenite::client_async_tls_with_config(request, tcp, None, Some(connector));
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Err(_) => Err(Refusal::Transport("handshake timed out".into())),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let body = response.body().clone().unwrap_or_default();
            Err(Refusal::Http(
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            ))
        }
        Ok(Err(other)) => Err(Refusal::Transport(other.to_string())),
    }
}
