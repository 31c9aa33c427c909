//! TLS to the collector (`[collector.tls]`) and to scrape targets: the CA that verifies the server, the
//! client certificate for mutual TLS, and the TLS step of a `wss://` connection.
//!
//! The files are read on every connection attempt, so renewed certificates are
//! picked up at the next reconnect without a restart, and a missing or broken file
//! is a logged, retried connection error like any other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use monitoring_common::config::Problem;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// `[collector.tls]`: how the agent verifies the collector and proves who it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// PEM CA certificate(s) the collector's certificate must chain to. Required
    /// for `wss://` endpoints (system roots are not used). Default: none.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (with `key`). Default: none.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`. Default: none.
    pub key: Option<PathBuf>,
    /// Name to verify the collector's certificate against, instead of the
    /// endpoint's host. Default: the endpoint's host.
    pub server_name: Option<String>,
}

impl TlsClientConfig {
    /// Problems with this section (keys prefixed with `prefix`); `wss` says whether
    /// the endpoint uses TLS.
    pub fn validate(&self, prefix: &str, wss: bool) -> Vec<Problem> {
        let mut problems = Vec::new();
        if wss && self.ca.is_none() {
            problems.push(Problem::new(
                format!("{prefix}.ca"),
                "is required for a wss:// endpoint (the CA that signed the collector's certificate)",
            ));
        }
        if self.cert.is_some() != self.key.is_some() {
            problems.push(Problem::new(
                format!(
                    "{prefix}.{}",
                    if self.cert.is_some() { "key" } else { "cert" }
                ),
                "cert and key go together: set both or neither",
            ));
        }
        if let Some(name) = &self.server_name
            && ServerName::try_from(name.as_str()).is_err()
        {
            problems.push(Problem::new(
                format!("{prefix}.server_name"),
                "is not a valid DNS name or IP address",
            ));
        }
        problems
    }
}

/// Why the TLS step failed. The text includes rustls' reason (unknown issuer,
/// expired, name mismatch...).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot load {what} from {path}: {message}")]
    Load {
        /// What was expected.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// The endpoint uses `wss://` but `collector.tls.ca` is not set.
    #[error("wss:// needs collector.tls.ca")]
    NoCa,
    /// The name to verify is not a DNS name or IP address.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("invalid client TLS configuration: {0}")]
    Config(String),
    /// The handshake failed.
    #[error("TLS handshake with {server_name} failed: {source}")]
    Handshake {
        /// The name verified.
        server_name: String,
        /// rustls' error, wrapped in an I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn load_error(what: &'static str, path: &Path, message: impl ToString) -> TlsError {
    TlsError::Load {
        what,
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| load_error("certificates", path, e))?;
    if certs.is_empty() {
        return Err(load_error("certificates", path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Builds the rustls client configuration from the files (read now).
pub fn client_config(config: &TlsClientConfig) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let ca = config.ca.as_deref().ok_or(TlsError::NoCa)?;
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| load_error("a CA certificate", ca, e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let client = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| load_error("a private key", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Config(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(client))
}

/// The TLS handshake over `tcp`, verifying the collector as `host` (or the
/// configured `server_name`).
pub async fn handshake(
    config: &TlsClientConfig,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let client = client_config(config)?;
    let name = config.server_name.as_deref().unwrap_or(host);
    // `http::Uri` keeps the brackets of an IPv6 literal.
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let server_name =
        ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName(name.to_owned()))?;
    TlsConnector::from(client)
        .connect(server_name, tcp)
        .await
        .map_err(|source| TlsError::Handshake {
            server_name: name.to_owned(),
            source,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn wss_needs_a_ca_and_cert_needs_a_key() {
        let config = TlsClientConfig::default();
        assert!(config.validate("collector.tls", false).is_empty());
        let keys: Vec<String> = config
            .validate("collector.tls", true)
            .iter()
            .map(|p| p.key.clone())
            .collect();
        assert_eq!(keys, ["collector.tls.ca"]);
        let config = TlsClientConfig {
            ca: Some("ca.pem".into()),
            cert: Some("a.pem".into()),
            ..TlsClientConfig::default()
        };
        let keys: Vec<String> = config
            .validate("collector.tls", true)
            .iter()
            .map(|p| p.key.clone())
            .collect();
        assert_eq!(keys, ["collector.tls.key"]);
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let config = TlsClientConfig {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsClientConfig::default()
        };
        let err = client_config(&config).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
