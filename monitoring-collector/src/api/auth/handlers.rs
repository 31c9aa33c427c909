//! `POST /api/v1/login`, `POST /api/v1/logout`, `GET /api/v1/whoami` and
//! `GET /api/v1/users`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::guard::{Principal, SESSION_COOKIE, unauthorized, unix_now};
use super::password::{MAX_PASSWORD_BYTES, VerifyError};
use super::users_file::{MAX_NAME_LEN, format_time};
use crate::api::{AppError, AppState};
use crate::telemetry::login_outcome;

/// Largest login request body, in bytes.
pub(crate) const LOGIN_BODY_LIMIT: usize = 8 * 1024;

/// The same answer for an unknown name and a wrong password.
const LOGIN_FAILED: &str = "invalid user name or password";

/// The login request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    username: String,
    password: String,
}

/// The login answer.
#[derive(Debug, Serialize)]
struct LoginResponse {
    token: String,
    role: super::Role,
    expires_at: String,
}

fn count(state: &AppState, outcome: &'static str) {
    state
        .telemetry
        .metrics
        .api_logins
        .get_or_create(&[("outcome", outcome)])
        .inc();
}

/// `Set-Cookie` for the session cookie; `None` clears it.
fn session_cookie(state: &AppState, token: Option<(&str, u64)>) -> Result<HeaderValue, AppError> {
    let (value, max_age) = token.unwrap_or(("", 0));
    let secure = if state.auth.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .map_err(|e| AppError::Internal(format!("bad cookie: {e}")))
}

/// `POST /api/v1/login`.
pub(crate) async fn login(
    State(state): State<AppState>,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            count(&state, login_outcome::BAD_REQUEST);
            return (
                rejection.status(),
                Json(json!({"error": format!("expected JSON {{\"username\": \"...\", \"password\": \"...\"}}: {}", rejection.body_text())})),
            )
                .into_response();
        }
    };
    let failed = || unauthorized(Json(json!({"error": LOGIN_FAILED})));
    // Neither can exist, so refusing them at once reveals nothing.
    if request.username.len() > MAX_NAME_LEN || request.password.len() > MAX_PASSWORD_BYTES {
        count(&state, login_outcome::FAILURE);
        return failed();
    }
    let directory = state.auth.accounts.current();
    let user = directory.users.get(&request.username).cloned();
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    match state.auth.passwords.verify(request.password, phc).await {
        Ok(true) => {}
        Ok(false) => {
            count(&state, login_outcome::FAILURE);
            tracing::info!(
                message = "API login refused.",
                user = user.as_ref().map_or("<unknown>", |u| u.name.as_str())
            );
            return failed();
        }
        Err(VerifyError::Busy) => {
            count(&state, login_outcome::BUSY);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(RETRY_AFTER, HeaderValue::from_static("1"))],
                Json(json!({"error": VerifyError::Busy.to_string()})),
            )
                .into_response();
        }
        Err(error @ VerifyError::Internal(_)) => {
            return AppError::Internal(error.to_string()).into_response();
        }
    }
    let Some(user) = user else {
        // verify() answers false without a hash; this cannot be reached.
        return failed();
    };
    let now = unix_now();
    let (token, expires) = state
        .auth
        .sessions
        .create(&user.name, &user.password_hash, now);
    let max_age = u64::try_from(expires.saturating_sub(now)).unwrap_or(0);
    let cookie = match session_cookie(&state, Some((&token, max_age))) {
        Ok(cookie) => cookie,
        Err(error) => return error.into_response(),
    };
    count(&state, login_outcome::SUCCESS);
    tracing::info!(message = "API login.", user = %user.name, role = %user.role);
    (
        [(SET_COOKIE, cookie)],
        Json(LoginResponse {
            token,
            role: user.role,
            expires_at: format_time(expires),
        }),
    )
        .into_response()
}

/// `POST /api/v1/logout`: ends the session the request was made with (an API token
/// is not a session and stays valid) and clears the cookie.
pub(crate) async fn logout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, AppError> {
    let ended = principal
        .session
        .is_some_and(|digest| state.auth.sessions.remove(&digest));
    let cookie = session_cookie(&state, None)?;
    Ok(([(SET_COOKIE, cookie)], Json(json!({"logged_out": ended}))).into_response())
}

/// `GET /api/v1/whoami`.
pub(crate) async fn whoami(Extension(principal): Extension<Principal>) -> Json<Principal> {
    Json(principal)
}

/// `GET /api/v1/users`: users and API tokens, without their hashes.
pub(crate) async fn users(State(state): State<AppState>) -> Json<serde_json::Value> {
    let directory = state.auth.accounts.current();
    let now = unix_now();
    let users: Vec<_> = directory
        .file
        .users
        .iter()
        .map(|u| json!({"name": u.name, "role": u.role, "created": format_time(u.created)}))
        .collect();
    let tokens: Vec<_> = directory
        .file
        .tokens
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "role": t.role,
                "created": format_time(t.created),
                "expires": t.expires.map(format_time),
                "expired": t.is_expired(now),
            })
        })
        .collect();
    Json(json!({"users": users, "tokens": tokens}))
}
