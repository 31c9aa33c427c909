//! The REST API on `[api] addr`: `/health`, `/ready`, `/metrics` and the JSON
//! endpoints under `/api/v1` (agents, logs, flows, metrics, metric names, the OpenAPI
//! document, login, logout, whoami, users).
//!
//! Access is checked by [`auth`]: `/health`, `/ready`, the OpenAPI document and
//! `POST /api/v1/login` are open; the other endpoints need the `read` role (unless
//! `[api.auth] open_read`), and `/api/v1/users` the `admin` role.
//!
//! Handlers parse their query strings strictly (unknown or repeated parameters are
//! 400s, so a typo never silently widens a search), call the store on the blocking
//! pool, and turn every failure into an [`AppError`], which becomes
//! `{"error": "..."}` with a fitting status at the edge.

mod agents;
pub mod auth;
mod error;
mod flows;
mod logs;
mod metrics;
mod openapi;
mod params;
pub mod serve;
pub mod time;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use monitoring_common::config::Problem;
use serde::Deserialize;
use serde_json::json;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use error::AppError;

use self::auth::{ApiAuth, ApiAuthConfig};

use crate::storage::sinks::FanOut;
use crate::storage::{StorageError, Store};
use crate::telemetry::Telemetry;

/// `[api]`: the REST API listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the REST API, `/health`, `/ready` and `/metrics`. Default
    /// `"127.0.0.1:7401"`. Every endpoint but `/health`, `/ready`, the OpenAPI
    /// document and login needs a login or an API token (see `[api.auth]`); serve it
    /// with `[api.tls]` anywhere but on loopback, or credentials cross the network in
    /// clear.
    pub addr: SocketAddr,
    /// `[api.tls]`: serve HTTPS. Same keys as `[server.tls]` except `client_ca`
    /// (not supported here). Default: off (plain http://, with a warning).
    pub tls: crate::tls::TlsConfig,
    /// `[api.auth]`: users, API tokens and sessions. Default: every data endpoint
    /// needs credentials, users in `var/collector/users.toml`.
    pub auth: ApiAuthConfig,
    /// Serve plain `http://` on an address other than loopback (credentials and
    /// data then cross the network in clear). Default `false`.
    pub allow_plaintext: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 7401)),
            tls: crate::tls::TlsConfig::default(),
            auth: ApiAuthConfig::default(),
            allow_plaintext: false,
        }
    }
}

impl ApiConfig {
    /// Problems with this section; keys are prefixed with `prefix` (e.g. `api`).
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        // A SocketAddr that parsed is usable; binding errors are reported at start.
        let mut problems = self.tls.validate(&format!("{prefix}.tls"));
        if self.tls.client_ca.is_some() {
            problems.push(Problem::new(
                format!("{prefix}.tls.client_ca"),
                "is not supported for the API (client certificates are for agents)",
            ));
        }
        problems.extend(self.auth.validate(&format!("{prefix}.auth")));
        problems.extend(crate::config::plaintext_problem(
            prefix,
            self.addr,
            self.tls.enabled,
            self.allow_plaintext,
        ));
        problems
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The store queries go to.
    pub store: Arc<dyn Store>,
    /// The sinks, whose required ones `/ready` checks.
    pub sinks: Arc<FanOut>,
    /// The collector's own metrics, for `/metrics`.
    pub telemetry: Arc<Telemetry>,
    /// Users, tokens and sessions.
    pub auth: Arc<ApiAuth>,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    // `route_layer`: the guard runs only for these routes, so that an unknown path
    // is a 404 and a wrong method a 405 whoever asks.
    let read = Router::new()
        .route("/metrics", get(self_metrics))
        .route("/api/v1/agents", get(agents::list))
        .route("/api/v1/logs", get(logs::search))
        .route("/api/v1/flows", get(flows::list))
        .route("/api/v1/metrics", get(metrics::series))
        .route("/api/v1/metrics/names", get(metrics::names))
        .route("/api/v1/whoami", get(auth::handlers::whoami))
        .route("/api/v1/logout", post(auth::handlers::logout))
        .route_layer(from_fn_with_state(state.clone(), auth::guard::require_read));
    let admin = Router::new()
        .route("/api/v1/users", get(auth::handlers::users))
        .route_layer(from_fn_with_state(
            state.clone(),
            auth::guard::require_admin,
        ));
    let router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route(
            "/api/v1/login",
            post(auth::handlers::login)
                .layer(DefaultBodyLimit::max(auth::handlers::LOGIN_BODY_LIMIT)),
        )
        .merge(read)
        .merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http());
    let router = SECURITY_HEADERS
        .into_iter()
        .fold(router, |r, (name, value)| {
            r.layer(SetResponseHeaderLayer::overriding(
                name,
                HeaderValue::from_static(value),
            ))
        });
    router.with_state(state)
}

/// Headers on every response that stop a browser from framing, sniffing or caching
/// what the API returns. No CORS headers are sent at all, so pages of other origins
/// cannot read the API (CORS is closed by default).
const SECURITY_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// Runs a store call on the blocking pool.
pub(crate) async fn blocking<T, F>(store: &Arc<dyn Store>, f: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StorageError> + Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| AppError::Internal(format!("store call failed: {e}")))?
        .map_err(AppError::from)
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready when the store and every required sink can take writes: a collector that
/// cannot acknowledge batches should be taken out of a load balancer.
async fn ready(State(state): State<AppState>) -> Response {
    let unavailable = |error: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "error": error})),
        )
            .into_response()
    };
    if let Err(error) = blocking(&state.store, |s| s.health()).await {
        tracing::warn!(message = "Store is not ready.", %error);
        return unavailable(error.to_string());
    }
    let sinks = Arc::clone(&state.sinks);
    match tokio::task::spawn_blocking(move || sinks.health()).await {
        Ok(Ok(())) => axum::Json(json!({"status": "ready"})).into_response(),
        Ok(Err(failure)) => {
            tracing::warn!(message = "Required sink is not ready.", error = %failure.error, sink = %failure.sink);
            unavailable(failure.to_string())
        }
        Err(error) => unavailable(format!("sink check failed: {error}")),
    }
}

async fn self_metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, Telemetry::CONTENT_TYPE)],
        state.telemetry.encode(),
    )
        .into_response()
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint; see /api/v1/openapi.json".into())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
