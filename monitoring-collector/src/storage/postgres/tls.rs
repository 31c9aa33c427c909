//! TLS from the store to PostgreSQL: rustls (ring provider) behind the `postgres`
//! client's [`MakeTlsConnect`].
//!
//! Whether TLS is used is the URL's `sslmode` (the client decides: `disable`
//! never, `prefer` when the server offers it, `require` always); whenever it is, the
//! server's certificate chain and host name are verified, against
//! `[storage] tls_ca` when set, else the system's root certificates (the built-in
//! web roots when the system has none). Unlike libpq's `prefer`, a server that
//! offers TLS with a certificate that does not verify is refused, not used in clear.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::Socket;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;

/// A failure to set up TLS or to complete a handshake. Never holds the URL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgTlsError {
    /// `[storage] tls_ca` could not be read.
    #[error("{0}")]
    Ca(#[from] crate::tls::TlsError),
    /// Neither the system nor the built-in roots gave a usable trust anchor.
    #[error("no root certificates to verify the server with (set storage.tls_ca)")]
    NoRoots,
    /// The rustls configuration could not be built.
    #[error("TLS setup: {0}")]
    Setup(#[source] rustls::Error),
    /// The host name in the URL cannot be checked against a certificate.
    #[error("host {0:?} is not a name or address a certificate can be checked against")]
    BadName(String),
    /// The server's certificate did not verify: the case an operator must see.
    #[error("the server's certificate did not verify against {roots}: {source}")]
    Unverified {
        /// What it was checked against.
        roots: Arc<str>,
        /// rustls's reason (unknown issuer, wrong name, expired...).
        #[source]
        source: rustls::Error,
    },
    /// Any other handshake failure.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
}

/// Makes TLS connections for the pool; cheap to clone (one per connection).
#[derive(Clone)]
pub(crate) struct PgTls {
    config: Arc<ClientConfig>,
    /// What certificates are checked against, for errors.
    roots: Arc<str>,
}

impl PgTls {
    /// Trusting the certificates of the PEM file `ca` when given, else the system's.
    pub(crate) fn new(ca: Option<&Path>) -> Result<PgTls, PgTlsError> {
        let mut store = RootCertStore::empty();
        let roots: Arc<str> = match ca {
            Some(path) => {
                for cert in crate::tls::load_certs("storage.tls_ca", path)? {
                    store.add(cert).map_err(PgTlsError::Setup)?;
                }
                format!("storage.tls_ca ({})", path.display()).into()
            }
            None => {
                // Unreadable system certificates are skipped, as every TLS client
                // does; the built-in web roots stand in for a system without any.
                let native = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(native.certs);
                if store.is_empty() {
                    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    "the built-in web root certificates (set storage.tls_ca for a private CA)"
                        .into()
                } else {
                    "the system's root certificates (set storage.tls_ca for a private CA)".into()
                }
            }
        };
        if store.is_empty() {
            return Err(PgTlsError::NoRoots);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(PgTlsError::Setup)?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(PgTls {
            config: Arc::new(config),
            roots,
        })
    }
}

impl MakeTlsConnect<Socket> for PgTls {
    type Stream = PgTlsStream;
    type TlsConnect = PgTlsConnect;
    type Error = PgTlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, PgTlsError> {
        // Called for every host, Unix sockets too (with ""), before the client knows
        // whether TLS will be used: a name that cannot be checked fails the
        // handshake, should one happen, not the connection.
        Ok(PgTlsConnect {
            tls: self.clone(),
            name: ServerName::try_from(domain.to_owned()).map_err(|_| domain.to_owned()),
        })
    }
}

/// One connection's handshake.
pub(crate) struct PgTlsConnect {
    tls: PgTls,
    name: Result<ServerName<'static>, String>,
}

impl TlsConnect<Socket> for PgTlsConnect {
    type Stream = PgTlsStream;
    type Error = PgTlsError;
    type Future = Pin<Box<dyn Future<Output = Result<PgTlsStream, PgTlsError>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let name = self.name.map_err(PgTlsError::BadName)?;
            let connector = TlsConnector::from(self.tls.config);
            match connector.connect(name, stream).await {
                Ok(stream) => Ok(PgTlsStream(Box::new(stream))),
                Err(error) => Err(classify(error, self.tls.roots)),
            }
        })
    }
}

/// Names a verification failure as such; tokio-rustls hides rustls's error in an
/// `io::Error`.
fn classify(error: io::Error, roots: Arc<str>) -> PgTlsError {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(
            source
            @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented),
        ) => PgTlsError::Unverified {
            roots,
            source: source.clone(),
        },
        _ => PgTlsError::Handshake(error),
    }
}

/// An established TLS connection.
pub(crate) struct PgTlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl TlsStream for PgTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        // No tls-server-end-point binding: SCRAM still authenticates both sides,
        // and the certificate is verified before any password is sent.
        ChannelBinding::none()
    }
}

impl AsyncRead for PgTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}
