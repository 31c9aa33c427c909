//! Serving the REST API with a bound on how long a client may take to send its
//! request headers.
//!
//! `axum::serve` sets no timer, so hyper applies no header timeout: a client that
//! opens a connection (after TLS, or on plain HTTP) and sends nothing, or drips
//! header bytes, would hold it for ever. Here each connection is served by hyper's
//! HTTP/1 server with `header_read_timeout` (`server.handshake_timeout_secs`), which
//! also closes a keep-alive connection left idle that long between requests.
//! Keep-alive and upgrades stay available (the live tail will be a WebSocket).

use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `router` on `listener` until `stop` is cancelled; connections then finish
/// the request they are answering (keep-alive ones close) and this returns.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) -> std::io::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let connections = TaskTracker::new();
    loop {
        let (io, addr) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        connections.spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let mut conn = pin!(
                builder
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades()
            );
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(message = "API connection ended with an error.", %error, peer = ?addr);
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}
