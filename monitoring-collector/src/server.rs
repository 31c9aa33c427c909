//! Wiring: binds the listeners, opens the store, starts the processor, the ingest
//! and API servers and retention, and shuts them down in order.
//!
//! Shutdown order, once the token is cancelled: both listeners stop accepting;
//! ingest connections stop reading and get `server.shutdown_timeout_secs` to
//! acknowledge the batches they hold; then the processor drains its queue and its
//! workers exit; then each best-effort sink gets `server.shutdown_timeout_secs` to
//! drain its queue (what remains is counted as dropped) and every sink is flushed;
//! then [`Server::serve`] returns.

use axum::serve::ListenerExt as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::auth::ApiAuth;
use crate::api::{self, AppState};
use crate::auth::{AuthMode, Authenticator};
use crate::config::{Config, StorageBackend, StorageConfig};
use crate::ingest::{self, IngestState};
use crate::processor::{Processor, SpawnError};
use crate::retention::{self, RETENTION_INTERVAL};
use crate::storage::sinks::{BuildError, Sinks};
use crate::storage::{StorageError, Store};
use crate::telemetry::Telemetry;
use crate::tls::TlsListener;

/// Why the collector could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// The config key of the address.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the store in {path}: {source}")]
    Storage {
        /// `storage.path` (sqlite), else the backend's name.
        path: PathBuf,
        /// The cause.
        #[source]
        source: StorageError,
    },
    /// The processor pool could not start.
    #[error(transparent)]
    Processor(#[from] SpawnError),
    /// A `[[storage.sinks]]` sink could not be built.
    #[error(transparent)]
    Sink(#[from] BuildError),
    /// The `[server.tls]` files could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The `[auth]` keys could not be loaded.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    /// A server stopped with an error.
    #[error("{what} server failed: {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Opens the configured store (blocking work, done on the blocking pool). A database
/// server that does not answer yet does not fail the start: see
/// [`crate::storage::deferred`].
pub async fn open_store(config: &StorageConfig) -> Result<Arc<dyn Store>, RunError> {
    let path = match config.backend {
        StorageBackend::Sqlite => config.path.clone(),
        _ => PathBuf::from(config.backend.as_str()),
    };
    let config = config.clone();
    let opened =
        tokio::task::spawn_blocking(move || crate::storage::deferred::open_or_defer(&config))
            .await
            .map_err(|e| StorageError::Io {
                context: "opening the store".into(),
                source: std::io::Error::other(e.to_string()),
            });
    opened
        .and_then(|r| r)
        .map_err(|source| RunError::Storage { path, source })
}

/// A collector with its listeners bound and its store open, ready to [`serve`](Server::serve).
pub struct Server {
    config: Config,
    store: Arc<dyn Store>,
    /// The `[[storage.sinks]]`, built at bind so that a bad one fails the start.
    sinks: Sinks,
    telemetry: Arc<Telemetry>,
    ingest_listener: TcpListener,
    /// Set when `server.tls.enabled`: loaded at bind so that bad files fail early.
    ingest_tls: Option<Arc<rustls::ServerConfig>>,
    api_listener: TcpListener,
    /// Set when `api.tls.enabled`.
    api_tls: Option<Arc<rustls::ServerConfig>>,
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { key, addr, source })
}

impl Server {
    /// Binds `server.websocket_addr` and `api.addr` (port 0 picks a free port; see
    /// [`Server::ingest_addr`]) and opens the store.
    pub async fn bind(config: Config) -> Result<Server, RunError> {
        let ingest_tls = match config.server.tls.enabled {
            true => Some(crate::tls::server_config(&config.server.tls, "server.tls")?),
            false => None,
        };
        let api_tls = match config.api.tls.enabled {
            true => Some(crate::tls::server_config(&config.api.tls, "api.tls")?),
            false => None,
        };
        let ingest_listener = bind("server.websocket_addr", config.server.websocket_addr).await?;
        let api_listener = bind("api.addr", config.api.addr).await?;
        let store = open_store(&config.storage).await?;
        let telemetry = Arc::new(Telemetry::new());
        let sink_configs = config.storage.sinks.clone();
        let metrics = telemetry.metrics.clone();
        let sinks = tokio::task::spawn_blocking(move || Sinks::start(&sink_configs, &metrics))
            .await
            .map_err(|e| RunError::Serve {
                what: "sink setup",
                source: std::io::Error::other(e.to_string()),
            })??;
        Ok(Server {
            config,
            store,
            sinks,
            telemetry,
            ingest_listener,
            ingest_tls,
            api_listener,
            api_tls,
        })
    }

    /// Where agents connect (`ws://<this>/ingest`).
    pub fn ingest_addr(&self) -> SocketAddr {
        self.ingest_listener
            .local_addr()
            .unwrap_or(self.config.server.websocket_addr)
    }

    /// Where the REST API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_listener
            .local_addr()
            .unwrap_or(self.config.api.addr)
    }

    /// Serves until `shutdown` is cancelled (or a server fails), then shuts down in
    /// order (see the module documentation).
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let (ingest_addr, api_addr) = (self.ingest_addr(), self.api_addr());
        let Server {
            config,
            store,
            sinks,
            telemetry,
            ingest_listener,
            ingest_tls,
            api_listener,
            api_tls,
        } = self;
        // Cancelled by the caller or by a failing server; never cancels the caller's token.
        let stop = shutdown.child_token();
        let metrics = telemetry.metrics.clone();
        // Starting reads the agent inventory from the store (blocking I/O).
        let (processor_config, limits, fanout) = (
            config.processor.clone(),
            config.server.limits,
            sinks.fanout(),
        );
        let (start_store, start_metrics) = (Arc::clone(&store), metrics.clone());
        let (processor, handle) = tokio::task::spawn_blocking(move || {
            Processor::start(
                &processor_config,
                limits,
                start_store,
                fanout,
                start_metrics,
            )
        })
        .await
        .map_err(|e| RunError::Processor(SpawnError(std::io::Error::other(e.to_string()))))??;
        let tracker = TaskTracker::new();
        let auth = Authenticator::new(&config.auth)?;
        if auth.mode() == AuthMode::None && !ingest_addr.ip().is_loopback() {
            tracing::warn!(
                message = "Agents are not authenticated (auth.mode = \"none\") on a non-loopback address; any client can write as any agent.",
                addr = %ingest_addr
            );
        }
        let ingest_state = IngestState::new(
            &config.server,
            auth,
            handle,
            metrics.clone(),
            stop.clone(),
            tracker.clone(),
        );
        let ingest_app = ingest::router(Arc::new(ingest_state));
        if config.api.auth.open_read && !api_addr.ip().is_loopback() {
            tracing::warn!(
                message = "The REST API's read endpoints need no credentials (api.auth.open_read = true) on a non-loopback address; anyone who can reach it can read every log and metric.",
                addr = %api_addr
            );
        }
        let api_app = api::router(AppState {
            store: Arc::clone(&store),
            sinks: sinks.fanout(),
            telemetry,
            auth: ApiAuth::new(&config.api.auth, api_tls.is_some()),
        });

        let scheme = if ingest_tls.is_some() { "wss" } else { "ws" };
        if ingest_tls.is_none() {
            tracing::warn!(
                message = "Ingest TLS is off (server.tls.enabled = false): agent traffic is unencrypted.",
                addr = %ingest_addr
            );
        }
        // Served by hand rather than with axum::serve, which cannot bound the time
        // to the upgrade request (see ingest::listener).
        let mut ingest_server: JoinHandle<std::io::Result<()>> =
            tokio::spawn(ingest::listener::serve(
                ingest_listener,
                ingest_tls,
                ingest_app,
                Duration::from_secs(config.server.handshake_timeout_secs),
                metrics.clone(),
                stop.clone(),
            ));
        let api_scheme = if api_tls.is_some() { "https" } else { "http" };
        // Bounds the TLS handshake and each request's headers (slowloris).
        let header_timeout = Duration::from_secs(config.server.handshake_timeout_secs);
        let mut api_server: JoinHandle<std::io::Result<()>> = match api_tls {
            Some(tls) => {
                // Refusals are not counted: the metric is about agents.
                let listener = TlsListener::new(api_listener, tls, header_timeout, None, &stop)
                    .map_err(|source| RunError::Serve {
                        what: "API",
                        source,
                    })?;
                tokio::spawn(api::serve::serve(
                    listener,
                    api_app,
                    header_timeout,
                    stop.clone(),
                ))
            }
            None => {
                if !api_addr.ip().is_loopback() {
                    tracing::warn!(
                        message = "API TLS is off (api.tls.enabled = false) on a non-loopback address: API traffic is unencrypted.",
                        addr = %api_addr
                    );
                }
                // Live tail sends small messages: no Nagle delay (as `tls::accept`).
                let api_listener = api_listener.tap_io(|tcp| {
                    if let Err(error) = tcp.set_nodelay(true) {
                        tracing::debug!(message = "Cannot set TCP_NODELAY.", %error);
                    }
                });
                tokio::spawn(api::serve::serve(
                    api_listener,
                    api_app,
                    header_timeout,
                    stop.clone(),
                ))
            }
        };
        tracker.spawn(retention::run(
            Arc::clone(&store),
            metrics,
            RETENTION_INTERVAL,
            stop.clone(),
        ));
        tracing::info!(
            message = "Listening for agents.",
            addr = %ingest_addr,
            url = %format!("{scheme}://{ingest_addr}{}", monitoring_common::protocol::INGEST_PATH),
        );
        tracing::info!(message = "Serving the REST API.", url = %format!("{api_scheme}://{api_addr}"));

        let mut failure = None;
        tokio::select! {
            () = stop.cancelled() => {}
            joined = &mut ingest_server => failure = Some(server_failure("ingest", joined)),
            joined = &mut api_server => failure = Some(server_failure("API", joined)),
        }
        stop.cancel();
        tracing::info!(message = "Shutting down.");

        let deadline = Duration::from_secs(config.server.shutdown_timeout_secs);
        // The servers only finish in-flight HTTP requests; upgraded WebSockets are on
        // the tracker.
        for (what, server) in [("ingest", ingest_server), ("API", api_server)] {
            if server.is_finished() {
                continue;
            }
            match tokio::time::timeout(deadline, server).await {
                Ok(joined) => {
                    if let Err(error) = server_failure(what, joined) {
                        failure.get_or_insert(Err(error));
                    }
                }
                Err(_) => tracing::warn!(message = "Server did not stop in time.", server = what),
            }
        }
        tracker.close();
        // Connections enforce the deadline themselves; the margin covers their close.
        if tokio::time::timeout(deadline + Duration::from_secs(2), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                message = "Ingest connections did not finish in time.",
                tasks = tracker.len()
            );
        }
        // Every processor handle lived in the ingest router and connections, now gone,
        // so the workers drain the queue and exit.
        let join = tokio::task::spawn_blocking(move || processor.join());
        if tokio::time::timeout(deadline, join).await.is_err() {
            tracing::warn!(message = "Processor workers did not stop in time.");
        }
        // Sinks bound their own time (the deadline, then a grace for a write in
        // progress); the margin covers that grace.
        let drain = tokio::task::spawn_blocking(move || sinks.shutdown(deadline));
        if tokio::time::timeout(deadline + Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tracing::warn!(message = "Sinks did not stop in time.");
        }
        tracing::info!(message = "Stopped.");
        match failure {
            Some(Err(error)) => Err(error),
            _ => Ok(()),
        }
    }
}

fn server_failure(
    what: &'static str,
    joined: Result<std::io::Result<()>, tokio::task::JoinError>,
) -> Result<(), RunError> {
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(RunError::Serve { what, source }),
        Err(e) => Err(RunError::Serve {
            what,
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Runs the collector until `shutdown` is cancelled: [`Server::bind`] then
/// [`Server::serve`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    Server::bind(config).await?.serve(shutdown).await
}
