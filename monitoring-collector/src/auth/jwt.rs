//! JWT mode (`[auth] mode = "jwt"`): verifying agents' bearer tokens, and minting
//! them for the `token` command.
//!
//! The verification key is chosen from the configured algorithm family, never from
//! the token's header: a token that claims HS256 where EdDSA is configured is refused
//! for its algorithm before any key is used, so the public key can never be mistaken
//! for an HMAC secret ("algorithm confusion").

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use monitoring_common::config::Problem;
use serde::{Deserialize, Serialize};

use super::deny_list::DenyList;
use super::{AgentId, AuthConfig, AuthError, AuthMode};

/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_LEN: usize = 32;

/// Longest `leeway_secs` accepted.
const MAX_LEEWAY_SECS: u64 = 3600;

/// Signature algorithms a token may use. There is deliberately no `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `auth.token_secret`.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256; the collector holds the public key.
    RS256,
    /// Ed25519; the collector holds the public key.
    EdDSA,
}

impl JwtAlgorithm {
    fn library(self) -> Algorithm {
        match self {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }

    /// Whether this algorithm verifies with a public key (rather than a shared secret).
    pub fn is_public_key(self) -> bool {
        !matches!(self, JwtAlgorithm::HS256)
    }
}

/// A secret from the configuration; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself; only for keying.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The claims the collector reads from a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// The agent id. (Defaults only so that a token without it is reported as
    /// missing the claim rather than as malformed; validation requires it.)
    #[serde(default)]
    pub sub: String,
    /// Expiry, seconds since the Unix epoch (required by validation).
    #[serde(default)]
    pub exp: Option<u64>,
    /// Token id, checked against the deny-list.
    #[serde(default)]
    pub jti: Option<String>,
}

/// The claims the `token` command writes.
#[derive(Debug, Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    iat: u64,
    exp: u64,
    jti: &'a str,
}

/// Why JWT mode cannot be set up, or a token cannot be minted.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// `token` was asked for while `auth.mode` is not `jwt`.
    #[error("auth.mode is not \"jwt\" in this configuration; tokens are only used in jwt mode")]
    NotJwt,
    /// A key the algorithm needs is not configured.
    #[error("auth.{key} is not set; {algorithm:?} needs it")]
    MissingKey {
        /// The config key.
        key: &'static str,
        /// The configured algorithm.
        algorithm: JwtAlgorithm,
    },
    /// A key file could not be read.
    #[error("cannot read auth.{key} {}: {source}", path.display())]
    ReadKey {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key file is not a PEM key of the configured algorithm.
    #[error("auth.{key} {} is not a {algorithm:?} PEM key: {reason}", path.display())]
    BadKey {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The configured algorithm.
        algorithm: JwtAlgorithm,
        /// What the parser said.
        reason: String,
    },
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// Problems with the JWT keys of `[auth]`, prefixed with `prefix`. Pure: key files
/// are read by [`JwtVerifier::new`].
pub(super) fn validate(config: &AuthConfig, prefix: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: &str| {
        problems.push(Problem::new(format!("{prefix}.{key}"), message));
    };
    if config.mode != AuthMode::Jwt {
        for (set, key) in [
            (config.token_secret.is_some(), "token_secret"),
            (config.public_key.is_some(), "public_key"),
            (config.private_key.is_some(), "private_key"),
            (config.deny_list.is_some(), "deny_list"),
        ] {
            if set {
                problem(
                    key,
                    "is only used with mode = \"jwt\"; set the mode or remove it",
                );
            }
        }
        return problems;
    }
    let Some(&first) = config.algorithms.first() else {
        problem(
            "algorithms",
            "must name an algorithm: [\"HS256\"], [\"RS256\"] or [\"EdDSA\"]",
        );
        return problems;
    };
    if config.algorithms.iter().any(|a| *a != first) {
        // One key is configured, so the allow-list is one algorithm; mixing a secret
        // with a public key is what algorithm-confusion attacks need.
        problem(
            "algorithms",
            "must name a single algorithm (HS256, RS256 or EdDSA); the collector holds one key",
        );
    }
    if first.is_public_key() {
        if config.public_key.is_none() {
            problem(
                "public_key",
                "must be set to the path of a PEM public key for RS256/EdDSA",
            );
        }
        if config.token_secret.is_some() {
            problem(
                "token_secret",
                "is only used with HS256; RS256/EdDSA use public_key",
            );
        }
    } else {
        match &config.token_secret {
            None => problem(
                "token_secret",
                "must be set for HS256, e.g. \"${MONITORING_TOKEN_SECRET}\"",
            ),
            Some(secret) if secret.expose().len() < MIN_SECRET_LEN => problem(
                "token_secret",
                "must be at least 32 bytes long (e.g. `openssl rand -base64 48`)",
            ),
            Some(_) => {}
        }
        for (set, key) in [
            (config.public_key.is_some(), "public_key"),
            (config.private_key.is_some(), "private_key"),
        ] {
            if set {
                problem(
                    key,
                    "is only used with RS256/EdDSA; HS256 uses token_secret",
                );
            }
        }
    }
    if config.audience.is_empty() {
        problem("audience", "must not be empty");
    }
    if config.issuer.as_deref() == Some("") {
        problem(
            "issuer",
            "must not be empty; remove it to accept any issuer",
        );
    }
    if config.leeway_secs > MAX_LEEWAY_SECS {
        problem("leeway_secs", "must be at most 3600");
    }
    problems
}

/// Verifies bearer tokens according to a validated `[auth]` in jwt mode.
#[derive(Debug)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    deny_list: Option<DenyList>,
}

impl JwtVerifier {
    /// Loads the verification key (and the deny-list, if configured).
    pub fn new(config: &AuthConfig) -> Result<JwtVerifier, AuthSetupError> {
        let algorithm = config
            .algorithms
            .first()
            .copied()
            .unwrap_or(JwtAlgorithm::HS256);
        let key = decoding_key(config, algorithm)?;
        let mut validation = Validation::new(algorithm.library());
        validation.algorithms = config.algorithms.iter().map(|a| a.library()).collect();
        validation.leeway = config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_audience(&[&config.audience]);
        let mut required = vec!["exp", "aud", "sub"];
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let deny_list = config.deny_list.as_deref().map(DenyList::open);
        Ok(JwtVerifier {
            key,
            validation,
            deny_list,
        })
    }

    /// The claims of `token` if it is valid, unexpired, for this audience, names a
    /// valid agent id and is not revoked.
    pub fn verify(&self, token: &str) -> Result<(AgentId, Claims), AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| token_error(e.kind()))?;
        let claims = data.claims;
        let agent = AgentId::parse(&claims.sub)
            .map_err(|e| AuthError::InvalidToken(format!("subject is not an agent id: {e}")))?;
        if let (Some(deny), Some(jti)) = (&self.deny_list, &claims.jti)
            && deny.contains(jti)
        {
            return Err(AuthError::RevokedToken);
        }
        Ok((agent, claims))
    }
}

/// An operator-facing reason that says what is wrong without echoing the token.
fn token_error(kind: &ErrorKind) -> AuthError {
    let reason = match kind {
        ErrorKind::ExpiredSignature => return AuthError::ExpiredToken,
        ErrorKind::InvalidAudience => "audience is not accepted",
        ErrorKind::InvalidIssuer => "issuer is not accepted",
        ErrorKind::InvalidAlgorithm => "algorithm is not allowed",
        ErrorKind::InvalidSignature => "signature does not verify",
        ErrorKind::ImmatureSignature => "token is not valid yet (nbf)",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "the exp claim is required",
            "aud" => "the aud claim is required",
            "sub" => "the sub claim is required",
            "iss" => "the iss claim is required",
            _ => "a required claim is missing",
        },
        _ => "not a well-formed JWT",
    };
    AuthError::InvalidToken(reason.into())
}

fn read_key(key: &'static str, path: &Path) -> Result<Vec<u8>, AuthSetupError> {
    std::fs::read(path).map_err(|source| AuthSetupError::ReadKey {
        key,
        path: path.to_owned(),
        source,
    })
}

fn decoding_key(
    config: &AuthConfig,
    algorithm: JwtAlgorithm,
) -> Result<DecodingKey, AuthSetupError> {
    if !algorithm.is_public_key() {
        let secret = config
            .token_secret
            .as_ref()
            .ok_or(AuthSetupError::MissingKey {
                key: "token_secret",
                algorithm,
            })?;
        return DecodingKey::from_secret(secret.expose().as_bytes())
            .map_err(|e| AuthSetupError::Sign(e.to_string()));
    }
    let path = config
        .public_key
        .as_deref()
        .ok_or(AuthSetupError::MissingKey {
            key: "public_key",
            algorithm,
        })?;
    let pem = read_key("public_key", path)?;
    let parsed = match algorithm {
        JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
        _ => DecodingKey::from_ed_pem(&pem),
    };
    parsed.map_err(|e| AuthSetupError::BadKey {
        key: "public_key",
        path: path.to_owned(),
        algorithm,
        reason: e.to_string(),
    })
}

fn encoding_key(
    config: &AuthConfig,
    algorithm: JwtAlgorithm,
) -> Result<EncodingKey, AuthSetupError> {
    if !algorithm.is_public_key() {
        let secret = config
            .token_secret
            .as_ref()
            .ok_or(AuthSetupError::MissingKey {
                key: "token_secret",
                algorithm,
            })?;
        return EncodingKey::from_secret(secret.expose().as_bytes())
            .map_err(|e| AuthSetupError::Sign(e.to_string()));
    }
    let path = config
        .private_key
        .as_deref()
        .ok_or(AuthSetupError::MissingKey {
            key: "private_key",
            algorithm,
        })?;
    let pem = read_key("private_key", path)?;
    let parsed = match algorithm {
        JwtAlgorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    };
    parsed.map_err(|e| AuthSetupError::BadKey {
        key: "private_key",
        path: path.to_owned(),
        algorithm,
        reason: e.to_string(),
    })
}

/// A token for `agent`, valid for `ttl` from now, signed with the configured
/// algorithm and key. `jti` defaults to 128 random bits in hex.
pub fn mint(
    config: &AuthConfig,
    agent: &AgentId,
    ttl: Duration,
    jti: Option<&str>,
) -> Result<String, AuthSetupError> {
    if config.mode != AuthMode::Jwt {
        return Err(AuthSetupError::NotJwt);
    }
    let algorithm = config
        .algorithms
        .first()
        .copied()
        .unwrap_or(JwtAlgorithm::HS256);
    let key = encoding_key(config, algorithm)?;
    let now = jsonwebtoken::get_current_timestamp();
    let random = format!("{:032x}", rand::random::<u128>());
    let claims = MintClaims {
        sub: agent.as_str(),
        aud: &config.audience,
        iss: config.issuer.as_deref(),
        iat: now,
        exp: now.saturating_add(ttl.as_secs()),
        jti: jti.unwrap_or(&random),
    };
    jsonwebtoken::encode(&Header::new(algorithm.library()), &claims, &key)
        .map_err(|e| AuthSetupError::Sign(e.to_string()))
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
