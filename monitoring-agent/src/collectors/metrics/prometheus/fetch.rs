//! One HTTP GET of a scrape target, over plain TCP or TLS, with hyper's HTTP/1.1
//! client on a fresh connection.
//!
//! A fresh connection per scrape costs one handshake every interval (seconds apart)
//! and means a wedged exporter never holds a pooled connection; the whole scrape is
//! bounded by the timeout and the body by `max_body_bytes`, so a slow or endless
//! exporter costs one failed scrape, never the agent's memory.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::config::ScrapeConfig;
use super::exposition::Format;
use crate::transport::tls::{TlsError, handshake};

/// What the scraper asks for: OpenMetrics first, then the 0.0.4 text format.
const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Why a scrape failed; the text is shipped as the reason of `up = 0`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL could not be used.
    #[error("invalid URL {0}")]
    Url(String),
    /// No TCP connection.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// `host:port`.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS step failed (certificate, name, handshake).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The bearer token file could not be read.
    #[error("cannot read bearer_token_file {path}: {source}")]
    Token {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// HTTP failed (connection reset, malformed response...).
    #[error("HTTP error: {0}")]
    Http(String),
    /// The target answered with a status other than 200.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body was larger than `max_body_bytes`.
    #[error("response body larger than {0} bytes (max_body_bytes)")]
    TooLarge(usize),
    /// The body is not UTF-8.
    #[error("response body is not UTF-8")]
    NotUtf8,
    /// The whole scrape took longer than its timeout.
    #[error("scrape timed out after {0:?}")]
    Timeout(Duration),
}

/// A response body and the format its `Content-Type` declares.
#[derive(Debug)]
pub struct Fetched {
    /// The declared format.
    pub format: Format,
    /// The body.
    pub body: String,
}

/// GETs the target's URL within its timeout.
pub async fn fetch(config: &ScrapeConfig) -> Result<Fetched, FetchError> {
    let timeout = config.timeout();
    tokio::time::timeout(timeout, fetch_unbounded(config))
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

async fn fetch_unbounded(config: &ScrapeConfig) -> Result<Fetched, FetchError> {
    let uri: http::Uri = config
        .url
        .parse()
        .map_err(|e| FetchError::Url(format!("{}: {e}", config.url)))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| FetchError::Url(config.url.clone()))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let address = format!("{host}:{port}");
    // `http::Uri` keeps the brackets of an IPv6 literal; connect wants them off.
    let tcp = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|source| FetchError::Connect {
            address: address.clone(),
            source,
        })?;
    // Nagle would delay the request by up to 40 ms.
    tcp.set_nodelay(true).ok();
    let mut request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            http::header::HOST,
            uri.authority().map_or(address.as_str(), |a| a.as_str()),
        )
        .header(http::header::ACCEPT, ACCEPT)
        .header(
            http::header::USER_AGENT,
            concat!("monitoring-agent/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(token) = bearer_token(config)? {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http(e.to_string()))?;
    match (https, &config.tls) {
        (true, Some(tls)) => {
            let stream = handshake(tls, &host, tcp).await?;
            send(TokioIo::new(stream), request, config.max_body_bytes).await
        }
        (true, None) => Err(FetchError::Tls(TlsError::NoCa)),
        (false, _) => send(TokioIo::new(tcp), request, config.max_body_bytes).await,
    }
}

/// The configured token, or the trimmed content of the token file (read now).
fn bearer_token(config: &ScrapeConfig) -> Result<Option<String>, FetchError> {
    if let Some(path) = &config.bearer_token_file {
        let text = std::fs::read_to_string(path).map_err(|source| FetchError::Token {
            path: path.display().to_string(),
            source,
        })?;
        return Ok(Some(text.trim().to_owned()));
    }
    Ok(config.bearer_token.clone())
}

async fn send<S>(
    io: TokioIo<S>,
    request: http::Request<Empty<Bytes>>,
    max_body_bytes: usize,
) -> Result<Fetched, FetchError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let http_error = |e: hyper::Error| FetchError::Http(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http_error)?;
    // The connection is driven beside the request and ends with it (dropped when
    // this future is, e.g. on timeout).
    let driver = async move { connection.await.map_err(http_error) };
    let exchange = async {
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(FetchError::Status(status.as_u16()));
        }
        let format = Format::from_content_type(
            response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        let body = Limited::new(response.into_body(), max_body_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge(max_body_bytes)
                } else {
                    FetchError::Http(e.to_string())
                }
            })?
            .to_bytes();
        let body = String::from_utf8(body.to_vec()).map_err(|_| FetchError::NotUtf8)?;
        Ok(Fetched { format, body })
    };
    tokio::pin!(driver);
    tokio::pin!(exchange);
    tokio::select! {
        result = &mut exchange => result,
        // The connection ended before the response: its error says why.
        result = &mut driver => match result {
            Err(error) => Err(error),
            Ok(()) => exchange.await,
        },
    }
}
