//! Unit tests of JWT configuration, minting and verification.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};

use super::*;
use crate::auth::Authenticator;

const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

fn hs256() -> AuthConfig {
    AuthConfig {
        mode: AuthMode::Jwt,
        token_secret: Some(Secret::new(SECRET)),
        ..AuthConfig::default()
    }
}

fn keys(problems: Vec<Problem>) -> Vec<String> {
    problems.into_iter().map(|p| p.key).collect()
}

#[test]
fn validation_of_jwt_keys() {
    assert!(validate(&AuthConfig::default(), "auth").is_empty());
    assert!(validate(&hs256(), "auth").is_empty());
    let short = AuthConfig {
        token_secret: Some(Secret::new("short")),
        ..hs256()
    };
    assert_eq!(keys(validate(&short, "auth")), ["auth.token_secret"]);
    let none = AuthConfig {
        token_secret: None,
        ..hs256()
    };
    assert_eq!(keys(validate(&none, "auth")), ["auth.token_secret"]);
    let eddsa = AuthConfig {
        algorithms: vec![JwtAlgorithm::EdDSA],
        ..hs256()
    };
    assert_eq!(
        keys(validate(&eddsa, "auth")),
        ["auth.public_key", "auth.token_secret"]
    );
    let mixed = AuthConfig {
        algorithms: vec![JwtAlgorithm::HS256, JwtAlgorithm::EdDSA],
        ..hs256()
    };
    assert_eq!(keys(validate(&mixed, "auth")), ["auth.algorithms"]);
    let empty = AuthConfig {
        algorithms: vec![],
        ..hs256()
    };
    assert_eq!(keys(validate(&empty, "auth")), ["auth.algorithms"]);
    let odd = AuthConfig {
        audience: String::new(),
        leeway_secs: 7200,
        issuer: Some(String::new()),
        ..hs256()
    };
    assert_eq!(
        keys(validate(&odd, "auth")),
        ["auth.audience", "auth.issuer", "auth.leeway_secs"]
    );
    let stray = AuthConfig {
        mode: AuthMode::None,
        ..hs256()
    };
    assert_eq!(keys(validate(&stray, "auth")), ["auth.token_secret"]);
}

#[test]
fn alg_none_is_not_a_config_value_and_secrets_are_not_debug_printed() {
    let parsed: Result<AuthConfig, _> = toml::from_str("mode = \"jwt\"\nalgorithms = [\"none\"]");
    assert!(parsed.is_err());
    let parsed: AuthConfig =
        toml::from_str(&format!("mode = \"jwt\"\ntoken_secret = \"{SECRET}\"")).unwrap();
    assert_eq!(parsed, hs256());
    assert!(!format!("{parsed:?}").contains(SECRET));
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

#[test]
fn minted_tokens_verify_and_bind_the_agent() {
    let config = hs256();
    let auth = Authenticator::new(&config).unwrap();
    let agent = AgentId::parse("web-1").unwrap();
    let token = mint(&config, &agent, Duration::from_secs(60), Some("id-1")).unwrap();
    let mut headers = bearer(&token);
    assert_eq!(auth.authenticate(&headers, None), Ok(agent.clone()));
    assert_eq!(auth.authenticate(&headers, Some("web-1")), Ok(agent));
    assert_eq!(
        auth.authenticate(&headers, Some("web-2")),
        Err(AuthError::CertificateMismatch)
    );
    headers.insert("x-monitoring-agent-id", HeaderValue::from_static("web-2"));
    assert_eq!(
        auth.authenticate(&headers, None),
        Err(AuthError::AgentIdMismatch)
    );
    assert_eq!(
        auth.authenticate(&HeaderMap::new(), None),
        Err(AuthError::MissingToken)
    );
    let mut basic = HeaderMap::new();
    basic.insert("authorization", HeaderValue::from_static("Basic eDp5"));
    assert_eq!(
        auth.authenticate(&basic, None),
        Err(AuthError::MissingToken)
    );
}

#[test]
fn refusals_name_the_reason() {
    let config = hs256();
    let auth = Authenticator::new(&config).unwrap();
    let agent = AgentId::parse("web-1").unwrap();
    let other = AuthConfig {
        audience: "someone-else".into(),
        ..hs256()
    };
    let token = mint(&other, &agent, Duration::from_secs(60), None).unwrap();
    assert_eq!(
        auth.authenticate(&bearer(&token), None),
        Err(AuthError::InvalidToken("audience is not accepted".into()))
    );
    let wrong_key = AuthConfig {
        token_secret: Some(Secret::new("another-secret-another-secret-another")),
        ..hs256()
    };
    let token = mint(&wrong_key, &agent, Duration::from_secs(60), None).unwrap();
    assert_eq!(
        auth.authenticate(&bearer(&token), None),
        Err(AuthError::InvalidToken("signature does not verify".into()))
    );
    assert_eq!(
        auth.authenticate(&bearer("not.a.jwt"), None),
        Err(AuthError::InvalidToken("not a well-formed JWT".into()))
    );
    assert!(matches!(
        mint(&AuthConfig::default(), &agent, Duration::from_secs(1), None),
        Err(AuthSetupError::NotJwt)
    ));
}

#[test]
fn subject_must_be_a_valid_agent_id() {
    let config = hs256();
    let auth = Authenticator::new(&config).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    };
    let bad_sub =
        sign(serde_json::json!({"sub": "../etc", "aud": config.audience, "exp": now + 60}));
    assert!(matches!(
        auth.authenticate(&bearer(&bad_sub), None),
        Err(AuthError::InvalidToken(reason)) if reason.starts_with("subject is not an agent id")
    ));
    let no_sub = sign(serde_json::json!({"aud": config.audience, "exp": now + 60}));
    assert_eq!(
        auth.authenticate(&bearer(&no_sub), None),
        Err(AuthError::InvalidToken("the sub claim is required".into()))
    );
}
