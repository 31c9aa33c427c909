//! JWT authentication of agents, attacked through the real collector binary: each
//! forged, expired, misdirected or revoked token is refused with 401 while a
//! well-behaved agent on the same collector keeps getting its batches acknowledged.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Collector, Socket, log_frame, round_trip};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header, get_current_timestamp};
use monitoring_common::protocol::{AGENT_ID_HEADER, AckStatus, Codec, INGEST_PATH};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const SECRET: &str = "test-secret-test-secret-test-secret-0123";
const AUDIENCE: &str = "monitoring-collector";

fn hs256_auth(dir: &Path) -> String {
    format!(
        "mode = \"jwt\"\ntoken_secret = \"{SECRET}\"\ndeny_list = \"{}\"\n",
        dir.join("revoked.txt").display()
    )
}

/// Valid claims for `agent`, expiring in an hour.
fn claims(agent: &str, jti: &str) -> Value {
    let now = get_current_timestamp();
    json!({"sub": agent, "aud": AUDIENCE, "iat": now, "exp": now + 3600, "jti": jti})
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        claims,
    )
}

/// Unpadded base64url, to forge tokens the library refuses to produce.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Opens `/ingest` (with `query` appended to the URL) with a bearer token and/or an
/// agent id header.
async fn open(
    collector: &Collector,
    query: &str,
    token: Option<&str>,
    agent_header: Option<&str>,
) -> Result<Socket, (u16, String)> {
    let url = format!("ws://{}{INGEST_PATH}{query}", collector.ws);
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    if let Some(agent) = agent_header {
        request
            .headers_mut()
            .insert(AGENT_ID_HEADER, HeaderValue::from_str(agent).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Err((
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            ))
        }
        Err(other) => panic!("connection failed without an HTTP answer: {other}"),
    }
}

/// Asserts a 401 whose JSON error contains `reason`.
async fn refused(
    collector: &Collector,
    query: &str,
    token: Option<&str>,
    header: Option<&str>,
    reason: &str,
) {
    match open(collector, query, token, header).await {
        Ok(_) => panic!("connection with {token:?} was accepted; expected 401 ({reason})"),
        Err((status, body)) => {
            assert_eq!(status, 401, "{body}");
            let error: Value = serde_json::from_str(&body).unwrap();
            let text = error["error"].as_str().unwrap();
            assert!(text.contains(reason), "{text:?} does not say {reason:?}");
            assert!(!text.contains(SECRET));
        }
    }
}

/// A batch from the well-behaved agent, acknowledged.
async fn ships(agent: &mut Socket, seq: u64) {
    let frame = log_frame(Codec::None, 1, seq, &[format!("good line {seq}")]);
    let ack = round_trip(agent, frame).await;
    assert_eq!((ack.status, ack.sequence), (AckStatus::Ok, seq), "{ack:?}");
}

/// An HS256 collector with a deny-list path (the file does not exist yet), and a
/// well-behaved agent on it that has shipped one batch.
async fn hs256_collector() -> (Collector, Socket) {
    let dir = tempfile::tempdir().unwrap();
    let auth = hs256_auth(dir.path());
    let collector = Collector::start_full("", "", &format!("[auth]\n{auth}"), dir).await;
    let good = hs256(&claims("good", "good-1"));
    let mut agent = open(&collector, "", Some(&good), None).await.unwrap();
    ships(&mut agent, 1).await;
    (collector, agent)
}

/// Runs one attack against a fresh HS256 collector: the attacker gets 401 with
/// `reason` in its error, the refusal is counted under `label`, and the well-behaved
/// agent's next batch is still acknowledged.
async fn attack(query: &str, token: Option<&str>, header: Option<&str>, reason: &str, label: &str) {
    let (collector, mut agent) = hs256_collector().await;
    refused(&collector, query, token, header, reason).await;
    ships(&mut agent, 2).await;
    let metrics = collector.self_metrics().await;
    let counted = format!("monitoring_ingest_connections_refused_total{{reason=\"{label}\"}} 1");
    assert!(metrics.contains(&counted), "{counted} not in\n{metrics}");
}

fn now() -> u64 {
    get_current_timestamp()
}

#[tokio::test]
async fn no_token_is_refused() {
    attack(
        "",
        None,
        Some("evil"),
        "missing `Authorization: Bearer",
        "auth_missing",
    )
    .await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let expired = hs256(&json!({"sub": "evil", "aud": AUDIENCE, "exp": now() - 600}));
    attack("", Some(&expired), None, "expired", "auth_expired").await;
}

#[tokio::test]
async fn alg_none_token_is_refused() {
    let unsigned = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims("evil", "n").to_string().as_bytes())
    );
    attack("", Some(&unsigned), None, "invalid token", "auth_invalid").await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let stranger = hs256(&json!({"sub": "evil", "aud": "other-service", "exp": now() + 600}));
    attack("", Some(&stranger), None, "audience", "auth_invalid").await;
}

#[tokio::test]
async fn token_without_exp_is_refused() {
    let forever = hs256(&json!({"sub": "evil", "aud": AUDIENCE}));
    attack(
        "",
        Some(&forever),
        None,
        "exp claim is required",
        "auth_invalid",
    )
    .await;
}

#[tokio::test]
async fn agent_header_other_than_the_subject_is_refused() {
    // A valid token for "good" cannot be used to write as someone else.
    let good = hs256(&claims("good", "good-2"));
    attack(
        "",
        Some(&good),
        Some("other"),
        "does not match",
        "auth_mismatch",
    )
    .await;
}

#[tokio::test]
async fn token_in_the_url_is_ignored() {
    let good = hs256(&claims("good", "good-3"));
    attack(
        &format!("?token={good}"),
        None,
        None,
        "missing",
        "auth_missing",
    )
    .await;
}

#[tokio::test]
async fn revoked_token_is_refused_after_the_deny_list_changes() {
    let (collector, mut agent) = hs256_collector().await;
    let victim = hs256(&claims("laptop", "lost-laptop"));
    drop(open(&collector, "", Some(&victim), None).await.unwrap());
    // Revocation without restart: the same token is refused once its jti is in the
    // file; the other agent's token is not affected.
    let revoked_path = collector.dir.path().join("revoked.txt");
    std::fs::write(&revoked_path, "# stolen\nlost-laptop\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match open(&collector, "", Some(&victim), None).await {
            Err((401, body)) => {
                assert!(body.contains("revoked"), "{body}");
                break;
            }
            Err(other) => panic!("unexpected refusal {other:?}"),
            Ok(_) => {
                assert!(Instant::now() < deadline, "deny-list not reloaded in 15 s");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    ships(&mut agent, 2).await;
    let fresh = hs256(&claims("good", "good-4"));
    let mut second = open(&collector, "", Some(&fresh), None).await.unwrap();
    ships(&mut second, 1).await;
    let metrics = collector.self_metrics().await;
    assert!(
        metrics.contains("monitoring_ingest_connections_refused_total{reason=\"auth_revoked\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn eddsa_refuses_an_hs256_token_signed_with_the_public_key() {
    let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let private_pem = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
    let public_pem = signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let public_bytes = public_pem.clone().into_bytes();
    let dir = tempfile::tempdir().unwrap();
    let public_path = dir.path().join("public.pem");
    std::fs::write(&public_path, &public_pem).unwrap();
    let auth = format!(
        "[auth]\nmode = \"jwt\"\nalgorithms = [\"EdDSA\"]\npublic_key = \"{}\"\n",
        public_path.display()
    );
    let collector = Collector::start_full("", "", &auth, dir).await;
    let eddsa = EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap();
    let good = sign(Algorithm::EdDSA, &eddsa, &claims("good", "g"));
    let mut agent = open(&collector, "", Some(&good), Some("good"))
        .await
        .unwrap();
    ships(&mut agent, 1).await;

    // The public key is public: an attacker can HMAC with it and hope the collector
    // picks the key by the token's header.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_bytes).unwrap(),
        &claims("evil", "x"),
    );
    refused(
        &collector,
        "",
        Some(&confused),
        None,
        "algorithm is not allowed",
    )
    .await;
    ships(&mut agent, 2).await;
}

#[tokio::test]
async fn tokens_minted_by_the_cli_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let auth = hs256_auth(dir.path());
    let collector = Collector::start_full("", "", &format!("[auth]\n{auth}"), dir).await;
    let output = Command::new(env!("CARGO_BIN_EXE_monitoring-collector"))
        .arg("token")
        .arg("--config")
        .arg(collector.config_path())
        .args(["--agent-id", "cli-agent", "--ttl", "12h", "--jti", "cli-1"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        token.lines().count(),
        1,
        "only the token is printed: {token}"
    );
    let mut agent = open(&collector, "", Some(token.trim()), None)
        .await
        .unwrap();
    ships(&mut agent, 1).await;

    // Refused, with a clear reason, when the config is not in jwt mode.
    let plain = common::write_config(collector.dir.path(), "plain.toml", "");
    let output = Command::new(env!("CARGO_BIN_EXE_monitoring-collector"))
        .args(["token", "--agent-id", "x", "--config"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not \"jwt\""), "{stderr}");
}

#[test]
fn check_config_reports_jwt_problems() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = common::write_config(dir.path(), "c.toml", text);
        let output = Command::new(env!("CARGO_BIN_EXE_monitoring-collector"))
            .arg("check-config")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let short = check("[auth]\nmode = \"jwt\"\ntoken_secret = \"short\"\n");
    assert!(
        short.contains("auth.token_secret") && short.contains("32 bytes"),
        "{short}"
    );
    assert!(
        !short.contains("\"short\""),
        "the secret is not echoed: {short}"
    );
    let none = check("[auth]\nmode = \"jwt\"\nalgorithms = [\"none\"]\n");
    assert!(none.contains("auth.algorithms"), "{none}");
    let missing = dir.path().join("absent.pem");
    let unreadable = check(&format!(
        "[auth]\nmode = \"jwt\"\nalgorithms = [\"EdDSA\"]\npublic_key = \"{}\"\n",
        missing.display()
    ));
    assert!(
        unreadable.contains("cannot read auth.public_key"),
        "{unreadable}"
    );
}
