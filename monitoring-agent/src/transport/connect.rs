//! Opening the WebSocket to the collector, and the backoff between attempts.
//!
//! [`connect`] is the one place a connection is made; `wss://` endpoints go through
//! [`super::tls`] (the agent's own TCP connect and rustls handshake, so that the
//! verified name can be overridden and TLS failures get their own error). The host name is resolved on every
//! attempt (Vector #2070: never pin an address). Credentials travel in the
//! `Authorization` header, never in the URL, and never appear in an error.

use std::time::Duration;

use http::HeaderValue;
use http::header::AUTHORIZATION;
use monitoring_common::protocol::AGENT_ID_HEADER;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::tls::{self, TlsClientConfig, TlsError};

/// The connection type the transport speaks over.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bytes read from the socket at a time.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Largest message the agent accepts from the collector. Acknowledgements are at most
/// 26 bytes plus a reason of at most 64 KiB.
const MAX_INCOMING_MESSAGE: usize = 128 * 1024;

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Endpoint {
    /// `ws://host:port/path`.
    pub url: String,
    /// Sent as `x-monitoring-agent-id`.
    pub agent_id: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub auth_token: Option<String>,
    /// Limit on TCP connect plus the TLS and WebSocket handshakes.
    pub connect_timeout: Duration,
    /// `[collector.tls]`, used by `wss://` endpoints.
    pub tls: TlsClientConfig,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("agent_id", &self.agent_id)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint is not a usable WebSocket URL.
    #[error("collector endpoint {url} is not a valid WebSocket URL: {source}")]
    InvalidEndpoint {
        /// The endpoint.
        url: String,
        /// The cause.
        source: tokio_tungstenite::tungstenite::Error,
    },
    /// The agent id or token cannot be sent as an HTTP header.
    #[error("the {header} header for agent {agent_id} contains characters HTTP does not allow")]
    InvalidHeader {
        /// Which header.
        header: &'static str,
        /// The agent.
        agent_id: String,
    },
    /// TCP connect and handshake took too long.
    #[error("connecting to {url} timed out after {timeout:?}")]
    Timeout {
        /// The endpoint.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// The collector answered the upgrade with an HTTP error (401/403: credentials).
    #[error("collector at {url} refused the connection of agent {agent_id} with HTTP {status}")]
    Refused {
        /// The endpoint.
        url: String,
        /// The agent.
        agent_id: String,
        /// The HTTP status.
        status: u16,
    },
    /// The TLS handshake (or loading the TLS files) failed; the text has the reason
    /// (unknown issuer, expired certificate, name mismatch...).
    #[error("cannot connect to {url}: {source}")]
    Tls {
        /// The endpoint.
        url: String,
        /// The cause.
        source: TlsError,
    },
    /// TCP or WebSocket failure.
    #[error("cannot connect to {url}: {source}")]
    Io {
        /// The endpoint.
        url: String,
        /// The cause.
        source: tokio_tungstenite::tungstenite::Error,
    },
}

impl ConnectError {
    /// Whether the collector refused the agent's credentials (an operator must act).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ConnectError::Refused {
                status: 401 | 403,
                ..
            }
        )
    }
}

/// Opens a WebSocket to the collector with the agent's identity headers.
pub async fn connect(endpoint: &Endpoint) -> Result<WsStream, ConnectError> {
    let url = endpoint.url.clone();
    let mut request =
        url.as_str()
            .into_client_request()
            .map_err(|source| ConnectError::InvalidEndpoint {
                url: url.clone(),
                source,
            })?;
    let invalid = |header| ConnectError::InvalidHeader {
        header,
        agent_id: endpoint.agent_id.clone(),
    };
    let id = HeaderValue::from_str(&endpoint.agent_id).map_err(|_| invalid(AGENT_ID_HEADER))?;
    request.headers_mut().insert(AGENT_ID_HEADER, id);
    if let Some(token) = &endpoint.auth_token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| invalid("authorization"))?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    // The collector only sends acknowledgements (tens of bytes): a small read buffer,
    // not tungstenite's 128 KiB, which is zero-filled and so resident from the first
    // read on (the idle agent's memory is one of the targets in BENCHMARKS.md).
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_INCOMING_MESSAGE))
        .max_frame_size(Some(MAX_INCOMING_MESSAGE));
    let secure = request.uri().scheme_str() == Some("wss");
    let attempt = async {
        if !secure {
            return tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                .await
                .map_err(Failure::Ws);
        }
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .map_err(|e| Failure::Ws(e.into()))?;
        // Acks are small and latency matters more than packing (as tungstenite does).
        drop(tcp.set_nodelay(true));
        let tls = tls::handshake(&endpoint.tls, &host, tcp)
            .await
            .map_err(Failure::Tls)?;
        tokio_tungstenite::client_async_with_config(
            request,
            MaybeTlsStream::Rustls(tls),
            Some(config),
        )
        .await
        .map_err(Failure::Ws)
    };
    match tokio::time::timeout(endpoint.connect_timeout, attempt).await {
        Err(_) => Err(ConnectError::Timeout {
            url,
            timeout: endpoint.connect_timeout,
        }),
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(Failure::Tls(source))) => Err(ConnectError::Tls { url, source }),
        Ok(Err(Failure::Ws(tokio_tungstenite::tungstenite::Error::Http(response)))) => {
            Err(ConnectError::Refused {
                url,
                agent_id: endpoint.agent_id.clone(),
                status: response.status().as_u16(),
            })
        }
        Ok(Err(Failure::Ws(source))) => Err(ConnectError::Io { url, source }),
    }
}

/// A failed attempt, before the URL is attached.
enum Failure {
    Tls(TlsError),
    Ws(tokio_tungstenite::tungstenite::Error),
}

/// Exponential backoff with full jitter: attempt `n` waits a random time between zero
/// and `min(cap, base * 2^n)`, so that many agents reconnecting after a collector
/// restart spread out instead of arriving together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Backoff from `base` doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The ceiling of the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay, and one more attempt counted.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=millis))
    }

    /// Starts over after a healthy connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_below_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            let c = b.ceiling();
            let d = b.next_delay();
            assert!(d <= c, "{d:?} > {c:?}");
            ceilings.push(c.as_millis());
        }
        assert_eq!(&ceilings[..4], &[100, 200, 400, 800]);
        assert_eq!(*ceilings.last().unwrap(), 30_000);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn refused_connections_are_errors_not_hangs() {
        // Bind and drop, so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = Endpoint {
            url: format!("ws://127.0.0.1:{port}/ingest"),
            agent_id: "a1".into(),
            auth_token: Some("secret".into()),
            connect_timeout: Duration::from_secs(2),
            tls: TlsClientConfig::default(),
        };
        let err = connect(&endpoint)
            .await
            .expect_err("connected to a closed port");
        assert!(matches!(err, ConnectError::Io { .. }), "{err}");
        assert!(!err.to_string().contains("secret"));
        assert!(!format!("{endpoint:?}").contains("secret"));
    }

    #[tokio::test]
    async fn bad_header_values_are_reported() {
        let endpoint = Endpoint {
            url: "ws://127.0.0.1:1/ingest".into(),
            agent_id: "bad\nid".into(),
            auth_token: None,
            connect_timeout: Duration::from_secs(1),
            tls: TlsClientConfig::default(),
        };
        assert!(matches!(
            connect(&endpoint).await,
            Err(ConnectError::InvalidHeader { .. })
        ));
    }
}
