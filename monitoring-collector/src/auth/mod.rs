//! Who an agent is: turns the headers of an ingest upgrade request into an
//! authenticated [`AgentId`], or a refusal.
//!
//! The agent id of a batch comes from here and only from here, never from the
//! payload, so that an agent cannot write as another. This module is the seam for the
//! JWT and mTLS modes (issue 3): they add an [`AuthMode`] variant, a config field or
//! two and a match arm in [`Authenticator::authenticate`]; ingest does not change.

use std::fmt;
use std::sync::Arc;

use axum::http::HeaderMap;
use monitoring_common::config::Problem;
use monitoring_common::protocol::AGENT_ID_HEADER;
use serde::Deserialize;

/// Longest agent id accepted, in bytes.
pub const MAX_AGENT_ID_LEN: usize = 128;

/// `[auth]`: how agents prove who they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Authentication mode. Default `"none"`: agents name themselves with the
    /// `x-monitoring-agent-id` header and are trusted. Only for development and
    /// trusted networks until the `jwt` and `mtls` modes exist.
    pub mode: AuthMode,
}

/// Authentication modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No proof: the agent id header is taken as it is.
    #[default]
    None,
}

impl AuthConfig {
    /// Problems with this section; keys are prefixed with `prefix` (e.g. `auth`).
    pub fn validate(&self, _prefix: &str) -> Vec<Problem> {
        // Nothing can be wrong with mode "none"; serde already refuses unknown modes.
        Vec::new()
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
}

/// Authenticates ingest connections according to `[auth]`.
#[derive(Debug, Clone)]
pub struct Authenticator {
    mode: AuthMode,
}

impl Authenticator {
    /// Builds the authenticator for a validated configuration.
    pub fn new(config: &AuthConfig) -> Authenticator {
        Authenticator { mode: config.mode }
    }

    /// The configured mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The agent that sent an upgrade request with these headers, or why not.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<AgentId, AuthError> {
        match self.mode {
            AuthMode::None => {
                let value = headers
                    .get(AGENT_ID_HEADER)
                    .ok_or(AuthError::MissingAgentId)?;
                let text = value
                    .to_str()
                    .map_err(|_| AuthError::InvalidAgentId("not visible ASCII".into()))?;
                AgentId::parse(text).map_err(|e| AuthError::InvalidAgentId(e.to_string()))
            }
        }
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
        let auth = Authenticator::new(&AuthConfig::default());
        let mut headers = HeaderMap::new();
        assert_eq!(auth.authenticate(&headers), Err(AuthError::MissingAgentId));
        headers.insert(AGENT_ID_HEADER, HeaderValue::from_static("bad id"));
        assert!(matches!(
            auth.authenticate(&headers),
            Err(AuthError::InvalidAgentId(_))
        ));
        headers.insert(AGENT_ID_HEADER, HeaderValue::from_static("host-1"));
        assert_eq!(
            auth.authenticate(&headers).map(|a| a.to_string()),
            Ok("host-1".into())
        );
    }
}
