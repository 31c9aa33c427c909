//! The guard in front of the protected endpoints: finds the request's credential,
//! authenticates it, checks the role the endpoint needs, and either passes the
//! request on with its [`Principal`] or refuses it.
//!
//! A credential is `Authorization: Bearer <token>` (an API token or a session token,
//! told apart by their prefix) or, without that header, the `monitoring_session`
//! cookie. Nothing in the URL is ever looked at, so tokens do not end up in access
//! logs or browser history. Refusals are `{"error": "..."}`: 401 with
//! `WWW-Authenticate: Bearer` when the credential is missing, invalid or expired,
//! 403 when its role is not enough. They never say whether a name exists.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use monitoring_common::event::now_ns;
use serde::Serialize;
use serde_json::json;

use super::secret::{API_TOKEN_PREFIX, Digest256, SESSION_TOKEN_PREFIX, sha256};
use super::sessions::Lookup;
use super::{ApiAuth, Role};
use crate::api::AppState;
use crate::telemetry::api_refuse_reason;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "monitoring_session";

/// Who is calling, as `GET /api/v1/whoami` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// User or token name; `anonymous` without credentials (`open_read`).
    pub name: String,
    /// What the caller may do.
    pub role: Role,
    /// How the caller authenticated.
    pub kind: PrincipalKind,
    /// The session token's digest, when the credential is a session (for logout).
    #[serde(skip)]
    pub session: Option<Digest256>,
}

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A user, with a login session.
    User,
    /// An API token.
    Token,
    /// No credentials, let through by `open_read`.
    Anonymous,
}

impl Principal {
    fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            role: Role::Read,
            kind: PrincipalKind::Anonymous,
            session: None,
        }
    }
}

/// Why a request was refused. The `Display` text is the response's `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credential at all.
    #[error(
        "authentication required: send `Authorization: Bearer <token>` or log in with POST /api/v1/login"
    )]
    Missing,
    /// A credential that is not a live token or session.
    #[error("invalid credentials")]
    Invalid,
    /// A token or session past its expiry.
    #[error("credentials have expired")]
    Expired,
    /// Authenticated, but the role is not enough.
    #[error("this endpoint needs the {0} role")]
    Forbidden(Role),
}

impl Refusal {
    /// The `reason` label it is counted under.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => api_refuse_reason::MISSING,
            Refusal::Invalid => api_refuse_reason::INVALID,
            Refusal::Expired => api_refuse_reason::EXPIRED,
            Refusal::Forbidden(_) => api_refuse_reason::FORBIDDEN,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.to_string()}));
        match self {
            Refusal::Forbidden(_) => (StatusCode::FORBIDDEN, body).into_response(),
            _ => unauthorized(body),
        }
    }
}

/// A 401 with the challenge RFC 9110 requires.
pub(crate) fn unauthorized(body: impl IntoResponse) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
        body,
    )
        .into_response()
}

/// The credential a request presents: the bearer token, else the session cookie.
fn presented(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| Refusal::Invalid)?;
        return match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                Ok(Some(token.trim()))
            }
            _ => Err(Refusal::Invalid),
        };
    }
    Ok(headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value))
}

/// The caller of a request with these headers at `now` (Unix seconds): `None` when
/// it presents no credential.
pub fn authenticate(
    auth: &ApiAuth,
    headers: &HeaderMap,
    now: i64,
) -> Result<Option<Principal>, Refusal> {
    let Some(token) = presented(headers)? else {
        return Ok(None);
    };
    if token.starts_with(API_TOKEN_PREFIX) {
        let directory = auth.accounts.current();
        let record = directory
            .tokens
            .get(&sha256(token))
            .ok_or(Refusal::Invalid)?;
        if record.is_expired(now) {
            return Err(Refusal::Expired);
        }
        return Ok(Some(Principal {
            name: record.name.clone(),
            role: record.role,
            kind: PrincipalKind::Token,
            session: None,
        }));
    }
    if !token.starts_with(SESSION_TOKEN_PREFIX) {
        return Err(Refusal::Invalid);
    }
    let session = match auth.sessions.get(token, now) {
        Lookup::Valid(session) => session,
        Lookup::Expired => return Err(Refusal::Expired),
        Lookup::Unknown => return Err(Refusal::Invalid),
    };
    let digest = sha256(token);
    let directory = auth.accounts.current();
    // The user's current role counts; a removed user or a new password ends it.
    match directory.users.get(&session.user) {
        Some(user) if sha256(&user.password_hash) == session.credential => Ok(Some(Principal {
            name: user.name.clone(),
            role: user.role,
            kind: PrincipalKind::User,
            session: Some(digest),
        })),
        _ => {
            auth.sessions.remove(&digest);
            Err(Refusal::Invalid)
        }
    }
}

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    now_ns().div_euclid(1_000_000_000)
}

async fn require(state: AppState, needed: Role, mut request: Request, next: Next) -> Response {
    let principal = match authenticate(&state.auth, request.headers(), unix_now()) {
        Ok(Some(principal)) => principal,
        Ok(None) if state.auth.open_read && needed == Role::Read => Principal::anonymous(),
        Ok(None) => return refuse(&state, Refusal::Missing),
        Err(refusal) => return refuse(&state, refusal),
    };
    if !principal.role.allows(needed) {
        return refuse(&state, Refusal::Forbidden(needed));
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn refuse(state: &AppState, refusal: Refusal) -> Response {
    state
        .telemetry
        .metrics
        .api_requests_refused
        .get_or_create(&[("reason", refusal.reason())])
        .inc();
    refusal.into_response()
}

/// Middleware of the endpoints that need the `read` role (or `open_read`).
pub(crate) async fn require_read(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    require(state, Role::Read, request, next).await
}

/// Middleware of the endpoints that need the `admin` role.
pub(crate) async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    require(state, Role::Admin, request, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_bearer_header_wins_over_the_cookie() {
        assert_eq!(presented(&headers(&[])), Ok(None));
        assert_eq!(
            presented(&headers(&[("authorization", "bearer  mcapi_x ")])),
            Ok(Some("mcapi_x"))
        );
        assert_eq!(
            presented(&headers(&[
                ("authorization", "Bearer mcapi_x"),
                ("cookie", "monitoring_session=mcses_y")
            ])),
            Ok(Some("mcapi_x"))
        );
        assert_eq!(
            presented(&headers(&[("authorization", "Basic dTpw")])),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            presented(&headers(&[("authorization", "Bearer ")])),
            Err(Refusal::Invalid)
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(
            presented(&headers(&[
                ("cookie", "theme=dark; monitoring_session=mcses_a"),
                ("cookie", "other=1")
            ])),
            Ok(Some("mcses_a"))
        );
        assert_eq!(
            presented(&headers(&[("cookie", "xmonitoring_session=mcses_a")])),
            Ok(None)
        );
        assert_eq!(
            presented(&headers(&[("cookie", "monitoring_session=")])),
            Ok(None)
        );
    }

    #[test]
    fn refusals_are_401_with_a_challenge_or_403() {
        let response = Refusal::Expired.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        let response = Refusal::Forbidden(Role::Admin).into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(
            Refusal::Forbidden(Role::Admin).to_string(),
            "this endpoint needs the admin role"
        );
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        map
    }

    #[test]
    fn tokens_and_sessions_authenticate_until_expired_or_removed() {
        use crate::api::auth::ApiAuthConfig;
        use crate::api::auth::password::hash_password;
        use crate::api::auth::secret::to_hex;
        use crate::api::auth::users_file::{TokenRecord, UserRecord, UsersFile};

        let dir = tempfile::tempdir().unwrap();
        let users_file = dir.path().join("users.toml");
        let token = |name: &str, role, expires| TokenRecord {
            name: name.into(),
            role,
            sha256: to_hex(&sha256(&format!("mcapi_{name}"))),
            created: 0,
            expires,
        };
        let alice = UserRecord {
            name: "alice".into(),
            role: Role::Admin,
            password_hash: hash_password("alice password").unwrap(),
            created: 0,
        };
        let mut file = UsersFile {
            users: vec![alice.clone()],
            tokens: vec![
                token("reader", Role::Read, Some(2_000)),
                token("old", Role::Admin, Some(1_000)),
            ],
        };
        file.write(&users_file).unwrap();
        let config = ApiAuthConfig {
            users_file,
            ..ApiAuthConfig::default()
        };
        let auth = ApiAuth::new(&config, false);
        let now = 1_500;

        let reader = authenticate(&auth, &bearer("mcapi_reader"), now)
            .unwrap()
            .unwrap();
        assert_eq!(
            (reader.name.as_str(), reader.role, reader.kind),
            ("reader", Role::Read, PrincipalKind::Token)
        );
        assert_eq!(
            authenticate(&auth, &bearer("mcapi_old"), now),
            Err(Refusal::Expired)
        );
        assert_eq!(
            authenticate(&auth, &bearer("mcapi_nobody"), now),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            authenticate(&auth, &bearer("something"), now),
            Err(Refusal::Invalid)
        );
        assert_eq!(authenticate(&auth, &HeaderMap::new(), now), Ok(None));

        let (session, _) = auth.sessions.create("alice", &alice.password_hash, now);
        let user = authenticate(&auth, &bearer(&session), now)
            .unwrap()
            .unwrap();
        assert_eq!(
            (user.name.as_str(), user.role, user.kind),
            ("alice", Role::Admin, PrincipalKind::User)
        );
        assert_eq!(user.session, Some(sha256(&session)));
        assert_eq!(
            authenticate(&auth, &bearer(&session), now + 43_200),
            Err(Refusal::Expired)
        );

        // A new password (or removal) ends the user's sessions at the next reload.
        let (session, _) = auth.sessions.create("alice", &alice.password_hash, now);
        file.users[0].password_hash = hash_password("another password").unwrap();
        file.write(&config.users_file).unwrap();
        auth.accounts.reload_now();
        assert_eq!(
            authenticate(&auth, &bearer(&session), now),
            Err(Refusal::Invalid)
        );
        assert!(auth.sessions.is_empty());
    }
}
