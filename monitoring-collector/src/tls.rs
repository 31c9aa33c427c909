//! TLS for the ingest listener (`[server.tls]`) and the API (`[api.tls]`): the rustls
//! configuration, the handshake with the verified client certificate identity handed
//! to the ingest handler ([`accept_tls`], used by the ingest listener in
//! `crate::ingest`), and a listener for `axum::serve` that completes handshakes off
//! the accept loop (used by the API).
//!
//! [`TlsListener`] runs handshakes in their own tasks, each bounded by
//! `server.handshake_timeout_secs`, so a client that opens TCP and never finishes (or
//! never starts) the handshake holds one task until the deadline and delays nobody
//! else. Only completed handshakes reach axum, through a bounded channel.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use monitoring_common::config::Problem;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::telemetry::Metrics;

/// `connections_refused` reason: the TLS handshake failed (bad or missing client
/// certificate, unsupported version, not TLS at all).
pub const REFUSE_TLS: &str = "tls_handshake";
/// `connections_refused` reason: the TLS handshake did not finish in time.
pub const REFUSE_TLS_TIMEOUT: &str = "tls_timeout";
/// `connections_refused` reason: too many handshakes in progress.
pub const REFUSE_TLS_BUSY: &str = "tls_busy";

/// Most handshakes in progress at once; further connections are closed at once.
const MAX_PENDING_HANDSHAKES: usize = 1024;

/// `[server.tls]`: TLS on the ingest listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Serve `wss://` instead of `ws://`. Default `false` (plain, with a warning).
    pub enabled: bool,
    /// PEM certificate chain of the server, leaf first. Required when enabled.
    /// Default: none.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the server. Required when
    /// enabled. Default: none.
    pub key: Option<PathBuf>,
    /// PEM CA certificate(s) agents' client certificates must chain to. When set,
    /// a client certificate is required (mutual TLS). Default: none.
    pub client_ca: Option<PathBuf>,
    /// Lowest TLS version accepted: `"1.3"` (default) or `"1.2"`.
    pub min_version: TlsVersion,
}

/// Lowest accepted TLS version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3 only.
    #[default]
    #[serde(rename = "1.3")]
    V1_3,
}

impl TlsConfig {
    /// Problems with this section; keys are prefixed with `prefix` (e.g. `server.tls`).
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.enabled {
            if self.cert.is_none() {
                problems.push(Problem::new(
                    format!("{prefix}.cert"),
                    "is required when TLS is enabled",
                ));
            }
            if self.key.is_none() {
                problems.push(Problem::new(
                    format!("{prefix}.key"),
                    "is required when TLS is enabled",
                ));
            }
        }
        problems
    }
}

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot load {what} from {path} ({key}): {message}")]
    Load {
        /// The config key naming the file.
        key: String,
        /// What was expected.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// rustls refused the combination (e.g. the key does not match the certificate).
    #[error("invalid TLS configuration ({key}): {message}")]
    Invalid {
        /// The config section.
        key: String,
        /// rustls' explanation.
        message: String,
    },
}

fn load_error(key: &str, what: &'static str, path: &Path, message: impl ToString) -> TlsError {
    TlsError::Load {
        key: key.to_owned(),
        what,
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Reads every certificate of a PEM file; an empty file is an error.
pub fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| load_error(key, "certificates", path, e))?;
    if certs.is_empty() {
        return Err(load_error(
            key,
            "certificates",
            path,
            "no CERTIFICATE block",
        ));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| load_error(key, "a private key", path, e))
}

/// Builds the rustls server configuration of an enabled `[server.tls]`.
pub fn server_config(config: &TlsConfig, prefix: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let missing = |k: &str| TlsError::Invalid {
        key: format!("{prefix}.{k}"),
        message: "is required when TLS is enabled".into(),
    };
    let cert_path = config.cert.as_deref().ok_or_else(|| missing("cert"))?;
    let key_path = config.key.as_deref().ok_or_else(|| missing("key"))?;
    let certs = load_certs(&format!("{prefix}.cert"), cert_path)?;
    let key = load_key(&format!("{prefix}.key"), key_path)?;
    let invalid = |message: String| TlsError::Invalid {
        key: prefix.to_owned(),
        message,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static SupportedProtocolVersion] = match config.min_version {
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| invalid(e.to_string()))?;
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let ca_key = format!("{prefix}.client_ca");
            let mut roots = RootCertStore::empty();
            for cert in load_certs(&ca_key, ca_path)? {
                roots
                    .add(cert)
                    .map_err(|e| load_error(&ca_key, "a CA certificate", ca_path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder
        .with_single_cert(certs, key)
        .map_err(|e| invalid(e.to_string()))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// Who is on the other end of an ingest connection; the ingest handler's
/// `ConnectInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The identity of the verified client certificate (its first DNS SAN, else
    /// its first URI SAN, else its CN); `None` without mutual TLS.
    pub client_identity: Option<Arc<str>>,
}

impl Connected<IncomingStream<'_, TcpListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        PeerInfo {
            addr: *stream.remote_addr(),
            client_identity: None,
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The identity a client certificate (DER) stands for: its first DNS SAN, else its
/// first URI SAN, else its subject CN.
pub fn certificate_identity(der: &[u8]) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names = &san.value.general_names;
        let dns = names.iter().find_map(|n| match n {
            GeneralName::DNSName(name) => Some(*name),
            _ => None,
        });
        let uri = names.iter().find_map(|n| match n {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
        if let Some(name) = dns.or(uri) {
            return Some(name.to_owned());
        }
    }
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// A TLS listener for `axum::serve`: yields connections whose handshake completed.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, PeerInfo)>,
    local_addr: SocketAddr,
    /// Stops the accept task when axum drops the listener (at shutdown).
    _stop: DropGuard,
}

impl TlsListener {
    /// Starts accepting on `tcp`; each handshake must finish within
    /// `handshake_timeout`. Refusals are counted in `metrics` when given. The accept task ends with `shutdown` or when the listener
    /// is dropped.
    pub fn new(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        handshake_timeout: Duration,
        metrics: Option<Metrics>,
        shutdown: &CancellationToken,
    ) -> std::io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let stop = shutdown.child_token();
        let (tx, accepted) = mpsc::channel(64);
        tokio::spawn(accept_loop(
            tcp,
            TlsAcceptor::from(config),
            handshake_timeout,
            metrics,
            tx,
            stop.clone(),
        ));
        Ok(TlsListener {
            accepted,
            local_addr,
            _stop: stop.drop_guard(),
        })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept task ended (shutdown): axum's graceful shutdown is about to
            // stop calling accept, so wait for it rather than return a fake connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(PeerInfo {
            addr: self.local_addr,
            client_identity: None,
        })
    }
}

type Accepted = (TlsStream<TcpStream>, PeerInfo);

/// Completes the server side of a TLS handshake and reads the verified client
/// certificate's identity. Unbounded in time: callers add their deadline.
pub async fn accept_tls(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
) -> std::io::Result<Accepted> {
    let tls = acceptor.accept(stream).await?;
    let client_identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| certificate_identity(leaf))
        .map(Arc::from);
    let peer = PeerInfo {
        addr,
        client_identity,
    };
    Ok((tls, peer))
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    timeout: Duration,
    metrics: Option<Metrics>,
    tx: mpsc::Sender<Accepted>,
    stop: CancellationToken,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let Some((stream, addr)) = accept(&tcp, &stop).await else {
            return;
        };
        let refuse = {
            let metrics = metrics.clone();
            move |reason: &'static str| {
                if let Some(metrics) = &metrics {
                    metrics
                        .connections_refused
                        .get_or_create(&[("reason", reason)])
                        .inc();
                }
            }
        };
        let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
            refuse(REFUSE_TLS_BUSY);
            tracing::warn!(message = "Refused connection: too many TLS handshakes in progress.", peer = %addr);
            continue;
        };
        let (acceptor, tx, stop) = (acceptor.clone(), tx.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = tokio::time::timeout(timeout, accept_tls(&acceptor, stream, addr));
            let tls = tokio::select! {
                () = stop.cancelled() => return,
                done = handshake => done,
            };
            let accepted = match tls {
                Err(_) => {
                    refuse(REFUSE_TLS_TIMEOUT);
                    tracing::warn!(message = "Dropped connection: TLS handshake timed out.", peer = %addr, timeout = ?timeout);
                    return;
                }
                Ok(Err(error)) => {
                    refuse(REFUSE_TLS);
                    // A peer that closes before saying anything is a TCP probe (a load
                    // balancer's health check, a port scan): counted, logged quietly.
                    if error.kind() == std::io::ErrorKind::UnexpectedEof {
                        tracing::debug!(message = "TLS handshake failed.", %error, peer = %addr);
                    } else {
                        tracing::warn!(message = "TLS handshake failed.", %error, peer = %addr);
                    }
                    return;
                }
                Ok(Ok(accepted)) => accepted,
            };
            // Closed only at shutdown; the connection is then dropped.
            drop(tx.send(accepted).await);
        });
    }
}

/// The next TCP connection, or `None` once `stop` is cancelled. Accept errors
/// (usually EMFILE) are logged and retried after a pause, so as not to spin.
pub(crate) async fn accept(
    tcp: &TcpListener,
    stop: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            accepted = tcp.accept() => match accepted {
                Ok((stream, addr)) => {
                    // Acknowledgements and tail messages are small writes: with
                    // Nagle's algorithm one waits for the peer's delayed ACK of the
                    // previous one, which an agent sends only with its next batch
                    // (up to a flush interval later).
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(message = "Cannot set TCP_NODELAY.", %error);
                    }
                    return Some((stream, addr));
                }
                Err(error) => {
                    tracing::warn!(message = "Cannot accept a connection.", %error);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::certs::DevCa;

    #[tokio::test]
    async fn accepted_connections_send_small_writes_at_once() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (stream, _) = accept(&tcp, &CancellationToken::new()).await.unwrap();
        assert!(stream.nodelay().unwrap());
        drop(client.await.unwrap().unwrap());
    }

    #[test]
    fn enabled_tls_needs_a_cert_and_a_key() {
        let mut config = TlsConfig::default();
        assert!(config.validate("server.tls").is_empty());
        config.enabled = true;
        let keys: Vec<String> = config
            .validate("server.tls")
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["server.tls.cert", "server.tls.key"]);
    }

    #[test]
    fn min_version_parses_and_bad_files_are_named() {
        let text = "enabled = true\ncert = \"/nope/c.pem\"\nkey = \"/nope/k.pem\"\nmin_version = \"1.2\"\n";
        let config: TlsConfig = toml::from_str(text).unwrap();
        assert_eq!(config.min_version, TlsVersion::V1_2);
        let err = server_config(&config, "server.tls")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nope/c.pem") && err.contains("server.tls.cert"),
            "{err}"
        );
        assert!(toml::from_str::<TlsConfig>("min_version = \"1.1\"").is_err());
    }

    #[test]
    fn a_valid_configuration_builds_for_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::new("ca", 1).unwrap();
        let server = ca.server(&["localhost".into()], 1).unwrap();
        let path = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            Some(p)
        };
        let mut config = TlsConfig {
            enabled: true,
            cert: path("s.pem", &server.cert),
            key: path("k.pem", &server.key),
            client_ca: path("ca.pem", &ca.pem().cert),
            min_version: TlsVersion::V1_3,
        };
        server_config(&config, "server.tls").unwrap();
        config.min_version = TlsVersion::V1_2;
        server_config(&config, "server.tls").unwrap();
        // A key that does not match the certificate is refused at start.
        config.key = path("other.pem", &ca.pem().key);
        assert!(server_config(&config, "server.tls").is_err());
    }
}
