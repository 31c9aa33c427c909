//! Who an agent is: turns the headers of an ingest upgrade request into an
//! authenticated [`AgentId`], or a refusal.
//!
//! The agent id of a batch comes from here and only from here, never from the
//! payload, so that an agent cannot write as another. Modes: `none` (the agent names
//! itself with a header; development only) and `jwt` (a bearer token whose `sub` is
//! the agent id; [`jwt`]). When the transport authenticated a client certificate, its
//! identity is passed to [`Authenticator::authenticate`] and must equal the agent id.

pub mod deny_list;
pub mod jwt;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use monitoring_common::config::Problem;
use monitoring_common::protocol::AGENT_ID_HEADER;
use serde::Deserialize;

pub use jwt::{AuthSetupError, Claims, JwtAlgorithm, JwtVerifier, Secret, mint};

use crate::telemetry::refuse_reason;

/// Longest agent id accepted, in bytes.
pub const MAX_AGENT_ID_LEN: usize = 128;

/// `[auth]`: how agents prove who they are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Authentication mode. Default `"none"`: agents name themselves with the
    /// `x-monitoring-agent-id` header and are trusted; only for development and
    /// trusted networks. `"jwt"`: agents send `Authorization: Bearer <token>`.
    pub mode: AuthMode,
    /// JWT: the algorithm allow-list; a token signed otherwise is refused. One of
    /// `["HS256"]`, `["RS256"]`, `["EdDSA"]`. Default `["HS256"]`.
    pub algorithms: Vec<JwtAlgorithm>,
    /// JWT HS256: the shared secret, at least 32 bytes; write it as
    /// `"${MONITORING_TOKEN_SECRET}"` to keep it out of the file. No default.
    pub token_secret: Option<Secret>,
    /// JWT RS256/EdDSA: path of the PEM public key tokens are verified with. No
    /// default.
    pub public_key: Option<PathBuf>,
    /// JWT RS256/EdDSA: path of the PEM (PKCS#8) private key, used only by the
    /// `token` command; keep it off the collector host if you can. No default.
    pub private_key: Option<PathBuf>,
    /// JWT: the required `aud` claim. Default `"monitoring-collector"`.
    pub audience: String,
    /// JWT: the required `iss` claim, if set. Default: unset (any issuer).
    pub issuer: Option<String>,
    /// JWT: clock skew tolerated on `exp` and `nbf`, in seconds. Default 30.
    pub leeway_secs: u64,
    /// JWT: path of a file of revoked token ids (`jti`), one per line, `#` comments;
    /// re-read when it changes. Default: unset (no revocation).
    pub deny_list: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::None,
            algorithms: vec![JwtAlgorithm::HS256],
            token_secret: None,
            public_key: None,
            private_key: None,
            audience: "monitoring-collector".into(),
            issuer: None,
            leeway_secs: 30,
            deny_list: None,
        }
    }
}

/// Authentication modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No proof: the agent id header is taken as it is.
    #[default]
    None,
    /// A bearer JWT whose `sub` is the agent id.
    Jwt,
}

impl AuthConfig {
    /// Problems with this section; keys are prefixed with `prefix` (e.g. `auth`).
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        jwt::validate(self, prefix)
    }
}

/// A validated agent id: 1 to 128 characters of `[A-Za-z0-9._-]`.
///
/// The character set keeps ids safe to show in logs, file names and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentId(Arc<str>);

/// Why a string is not an agent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAgentId {
    /// Empty.
    #[error("agent id is empty")]
    Empty,
    /// Longer than [`MAX_AGENT_ID_LEN`].
    #[error("agent id is {0} bytes long; at most 128 are allowed")]
    TooLong(usize),
    /// A character outside `[A-Za-z0-9._-]`.
    #[error("agent id contains {0:?}; only letters, digits, '.', '_' and '-' are allowed")]
    BadChar(char),
}

impl AgentId {
    /// Validates `id`.
    pub fn parse(id: &str) -> Result<AgentId, InvalidAgentId> {
        if id.is_empty() {
            return Err(InvalidAgentId::Empty);
        }
        if id.len() > MAX_AGENT_ID_LEN {
            return Err(InvalidAgentId::TooLong(id.len()));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(InvalidAgentId::BadChar(c));
        }
        Ok(AgentId(Arc::from(id)))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as the shared string batches carry.
    pub fn as_arc(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an upgrade request was refused. The `Display` text is sent to the agent in
/// the 401 response, so it says what to fix and nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The agent id header is absent.
    #[error("missing {AGENT_ID_HEADER} header")]
    MissingAgentId,
    /// The agent id header is not valid UTF-8 or not a valid id.
    #[error("invalid {AGENT_ID_HEADER} header: {0}")]
    InvalidAgentId(String),
    /// No `Authorization: Bearer` header (a token in the URL is not looked at).
    #[error("missing `Authorization: Bearer <token>` header")]
    MissingToken,
    /// The token is malformed, badly signed, for another audience...
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The token's `exp` has passed.
    #[error("token has expired")]
    ExpiredToken,
    /// The token's `jti` is on the deny-list.
    #[error("token has been revoked")]
    RevokedToken,
    /// The agent id header names another agent than the token.
    #[error("{AGENT_ID_HEADER} header does not match the token subject")]
    AgentIdMismatch,
    /// The client certificate names another agent than the token (or header).
    #[error("certificate identity does not match token subject")]
    CertificateMismatch,
}

impl AuthError {
    /// The `reason` label this refusal is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingAgentId | AuthError::InvalidAgentId(_) => refuse_reason::AUTH,
            AuthError::MissingToken => refuse_reason::AUTH_MISSING,
            AuthError::InvalidToken(_) => refuse_reason::AUTH_INVALID,
            AuthError::ExpiredToken => refuse_reason::AUTH_EXPIRED,
            AuthError::RevokedToken => refuse_reason::AUTH_REVOKED,
            AuthError::AgentIdMismatch | AuthError::CertificateMismatch => {
                refuse_reason::AUTH_MISMATCH
            }
        }
    }
}

/// Authenticates ingest connections according to `[auth]`.
#[derive(Debug, Clone)]
pub struct Authenticator {
    mode: AuthMode,
    jwt: Option<Arc<JwtVerifier>>,
}

impl Authenticator {
    /// Builds the authenticator for a validated configuration; in jwt mode this reads
    /// the key and the deny-list.
    pub fn new(config: &AuthConfig) -> Result<Authenticator, AuthSetupError> {
        let jwt = match config.mode {
            AuthMode::None => None,
            AuthMode::Jwt => Some(Arc::new(JwtVerifier::new(config)?)),
        };
        Ok(Authenticator {
            mode: config.mode,
            jwt,
        })
    }

    /// The configured mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The agent that sent an upgrade request with these headers, or why not.
    ///
    /// `peer_identity` is the identity (SAN or CN) of a verified client certificate,
    /// when the transport has one: it must then equal the agent id. With `None`
    /// nothing is compared.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        peer_identity: Option<&str>,
    ) -> Result<AgentId, AuthError> {
        let agent = match &self.jwt {
            None => header_agent_id(headers)?.ok_or(AuthError::MissingAgentId)?,
            Some(verifier) => {
                let token = bearer_token(headers)?;
                let (agent, _claims) = verifier.verify(token)?;
                if let Some(claimed) = header_agent_id(headers)?
                    && claimed != agent
                {
                    return Err(AuthError::AgentIdMismatch);
                }
                agent
            }
        };
        if let Some(identity) = peer_identity
            && identity != agent.as_str()
        {
            return Err(AuthError::CertificateMismatch);
        }
        Ok(agent)
    }
}

/// The agent id header, if present.
fn header_agent_id(headers: &HeaderMap) -> Result<Option<AgentId>, AuthError> {
    let Some(value) = headers.get(AGENT_ID_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| AuthError::InvalidAgentId("not visible ASCII".into()))?;
    AgentId::parse(text)
        .map(Some)
        .map_err(|e| AuthError::InvalidAgentId(e.to_string()))
}

/// The token of the `Authorization: Bearer` header; the scheme is case-insensitive
/// (RFC 7235).
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::MissingToken)?
        .to_str()
        .map_err(|_| AuthError::InvalidToken("Authorization header is not visible ASCII".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::MissingToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn agent_ids_are_validated() {
        assert_eq!(
            AgentId::parse("web-01.prod_x").map(|a| a.to_string()),
            Ok("web-01.prod_x".into())
        );
        assert_eq!(AgentId::parse(""), Err(InvalidAgentId::Empty));
        assert_eq!(
            AgentId::parse(&"a".repeat(129)),
            Err(InvalidAgentId::TooLong(129))
        );
        assert!(AgentId::parse(&"a".repeat(128)).is_ok());
        assert_eq!(AgentId::parse("a b"), Err(InvalidAgentId::BadChar(' ')));
        assert_eq!(AgentId::parse("é"), Err(InvalidAgentId::BadChar('é')));
        assert_eq!(
            AgentId::parse("../x").err(),
            Some(InvalidAgentId::BadChar('/'))
        );
    }

    #[test]
    fn mode_none_takes_the_header() {
        let auth = Authenticator::new(&AuthConfig::default()).unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(
            auth.authenticate(&headers, None),
            Err(AuthError::MissingAgentId)
        );
        headers.insert(AGENT_ID_HEADER, HeaderValue::from_static("bad id"));
        assert!(matches!(
            auth.authenticate(&headers, None),
            Err(AuthError::InvalidAgentId(_))
        ));
        headers.insert(AGENT_ID_HEADER, HeaderValue::from_static("host-1"));
        assert_eq!(
            auth.authenticate(&headers, None).map(|a| a.to_string()),
            Ok("host-1".into())
        );
    }
}
