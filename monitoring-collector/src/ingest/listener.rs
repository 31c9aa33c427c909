//! The ingest listener: accepts TCP, completes TLS when configured and serves each
//! connection's one HTTP request, the WebSocket upgrade, with hyper.
//!
//! `axum::serve` cannot bound how long a client takes to send its request, so a
//! client that finishes TLS (or opens plain TCP) and then sends nothing, or drips
//! header bytes, would hold a connection for ever. Here one deadline,
//! `server.handshake_timeout_secs` from accept, covers the TLS handshake and the HTTP
//! request until it is answered; a connection still short of that is dropped and
//! counted (`tls_timeout` during TLS, `upgrade_timeout` after). At most
//! [`MAX_PENDING`] connections are in that phase at once; more are closed at once
//! (`upgrade_busy`), so waiting clients cost bounded memory. Every answer other than
//! the upgrade closes the connection (`connection: close`), so a refused client
//! cannot camp on it. (Keep-alive cannot simply be turned off in hyper: it would add
//! `close` to the upgrade's `connection: upgrade` too, which clients refuse.)
//!
//! Once upgraded, the WebSocket runs in its own task (spawned by axum's
//! `on_upgrade`), free of this deadline; its idle timeout takes over.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::telemetry::{Metrics, refuse_reason};
use crate::tls::{PeerInfo, REFUSE_TLS, REFUSE_TLS_TIMEOUT, accept_tls};

/// Most connections between accept and upgrade at once.
pub const MAX_PENDING: usize = 1024;

/// What every accepted connection needs.
#[derive(Clone)]
struct Shared {
    router: Router,
    tls: Option<TlsAcceptor>,
    timeout: Duration,
    metrics: Metrics,
    stop: CancellationToken,
}

impl Shared {
    fn refuse(&self, reason: &'static str) {
        self.metrics
            .connections_refused
            .get_or_create(&[("reason", reason)])
            .inc();
    }
}

/// Serves `router` on `tcp` (with TLS when `tls` is set) until `stop` is cancelled,
/// then lets connections that are still before their upgrade finish (within their
/// deadline) and returns.
pub async fn serve(
    tcp: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    timeout: Duration,
    metrics: Metrics,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let shared = Shared {
        router,
        tls: tls.map(TlsAcceptor::from),
        timeout,
        metrics,
        stop,
    };
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    let connections = TaskTracker::new();
    loop {
        let Some((stream, addr)) = crate::tls::accept(&tcp, &shared.stop).await else {
            break;
        };
        let deadline = Instant::now() + shared.timeout;
        let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
            shared.refuse(refuse_reason::UPGRADE_BUSY);
            tracing::warn!(message = "Refused connection: too many connections waiting for their upgrade.", peer = %addr);
            continue;
        };
        connections.spawn(connection(shared.clone(), stream, addr, deadline, permit));
    }
    drop(tcp);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// One connection from accept to upgrade (or refusal).
async fn connection(
    shared: Shared,
    stream: TcpStream,
    addr: SocketAddr,
    deadline: Instant,
    _permit: OwnedSemaphorePermit,
) {
    let Some(acceptor) = &shared.tls else {
        let peer = PeerInfo {
            addr,
            client_identity: None,
        };
        return serve_http(&shared, stream, peer, deadline).await;
    };
    let handshake = tokio::time::timeout_at(deadline, accept_tls(acceptor, stream, addr));
    let handshake = tokio::select! {
        () = shared.stop.cancelled() => return,
        done = handshake => done,
    };
    match handshake {
        Err(_) => {
            shared.refuse(REFUSE_TLS_TIMEOUT);
            tracing::warn!(message = "Dropped connection: TLS handshake timed out.", peer = %addr, timeout = ?shared.timeout);
        }
        Ok(Err(error)) => {
            shared.refuse(REFUSE_TLS);
            tracing::warn!(message = "TLS handshake failed.", %error, peer = %addr);
        }
        Ok(Ok((tls, peer))) => serve_http(&shared, tls, peer, deadline).await,
    }
}

/// Reads and answers the connection's request by `deadline`; an upgraded connection
/// leaves this function as soon as the upgrade response is written.
async fn serve_http<I>(shared: &Shared, io: I, peer: PeerInfo, deadline: Instant)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = peer.addr;
    let router = TowerToHyperService::new(shared.router.clone());
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer.clone()));
        let answer = router.call(request);
        async move {
            let mut response = answer.await?;
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    // hyper's own header timeout starts after TLS, so the deadline above fires
    // first; it stays as a second bound should this loop ever change.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.timeout);
    let mut conn = pin!(
        builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
    );
    let mut expired = pin!(tokio::time::sleep_until(deadline));
    let mut shutting_down = false;
    loop {
        tokio::select! {
            biased;
            () = &mut expired => {
                shared.refuse(refuse_reason::UPGRADE_TIMEOUT);
                tracing::warn!(
                    message = "Dropped connection: no WebSocket upgrade request in time.",
                    peer = %addr,
                    timeout = ?shared.timeout
                );
                return;
            }
            () = shared.stop.cancelled(), if !shutting_down => {
                // Drops a connection still waiting for its request; one being
                // answered is finished first.
                conn.as_mut().graceful_shutdown();
                shutting_down = true;
            }
            result = conn.as_mut() => {
                if let Err(error) = result {
                    if error.is_timeout() {
                        shared.refuse(refuse_reason::UPGRADE_TIMEOUT);
                    }
                    tracing::debug!(message = "Ingest HTTP connection failed.", %error, peer = %addr);
                }
                return;
            }
        }
    }
}
