//! JWT authentication of agents, attacked through the real collector binary over TLS
//! with mutual TLS (certificates made at test time): each forged, expired,
//! misdirected or revoked token is refused with 401, even from a client holding a
//! valid certificate, while a well-behaved agent on the same collector keeps getting
//! its batches acknowledged.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::tls::{Client, Pki, Refusal, open_wss};
use common::{Collector, Socket, log_frame, round_trip};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header, get_current_timestamp};
use monitoring_common::protocol::{AckStatus, Codec};
use serde_json::{Value, json};
use tempfile::TempDir;

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

/// A collector with TLS, mutual TLS (certificates from `pki`) and the given `[auth]`.
struct Hardened {
    pki: Pki,
    collector: Collector,
}

async fn hardened(auth: &str, dir: TempDir) -> Hardened {
    let pki = Pki::new();
    let tls = pki.server_section(dir.path());
    let collector = Collector::start_full("", "", &format!("{tls}\n[auth]\n{auth}"), dir).await;
    Hardened { pki, collector }
}

/// Opens `wss://.../ingest` (with `query` appended to the URL) with a valid client
/// certificate for `cert`, a bearer token and/or an agent id header.
async fn open(
    h: &Hardened,
    cert: &str,
    query: &str,
    token: Option<&str>,
    agent_header: Option<&str>,
) -> Result<Socket, Refusal> {
    let cert = h.pki.agent(cert);
    let client = Client {
        cert: Some(&cert),
        token,
        agent_header,
        query,
    };
    open_wss(h.collector.ws, &h.pki.ca, &client).await
}

/// Asserts a 401 whose JSON error contains `reason`.
async fn refused(
    h: &Hardened,
    cert: &str,
    query: &str,
    token: Option<&str>,
    header: Option<&str>,
    reason: &str,
) {
    match open(h, cert, query, token, header).await {
        Ok(_) => panic!("connection with {token:?} was accepted; expected 401 ({reason})"),
        Err(Refusal::Transport(error)) => panic!("refused without an HTTP answer: {error}"),
        Err(Refusal::Http(status, body)) => {
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
async fn hs256_collector() -> (Hardened, Socket) {
    let dir = tempfile::tempdir().unwrap();
    let auth = hs256_auth(dir.path());
    let h = hardened(&auth, dir).await;
    let good = hs256(&claims("good", "good-1"));
    let mut agent = open(&h, "good", "", Some(&good), None).await.unwrap();
    ships(&mut agent, 1).await;
    (h, agent)
}

/// Runs one attack against a fresh HS256 collector by a client holding a valid
/// certificate for `cert`: it gets 401 with `reason` in its error, the refusal is
/// counted under `label`, and the well-behaved agent's next batch is still
/// acknowledged.
async fn attack(
    cert: &str,
    query: &str,
    token: Option<&str>,
    header: Option<&str>,
    reason: &str,
    label: &str,
) {
    let (h, mut agent) = hs256_collector().await;
    refused(&h, cert, query, token, header, reason).await;
    ships(&mut agent, 2).await;
    let metrics = h.collector.self_metrics().await;
    let counted = format!("monitoring_ingest_connections_refused_total{{reason=\"{label}\"}} 1");
    assert!(metrics.contains(&counted), "{counted} not in\n{metrics}");
}

fn now() -> u64 {
    get_current_timestamp()
}

#[tokio::test]
async fn no_token_is_refused() {
    attack(
        "evil",
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
    attack("evil", "", Some(&expired), None, "expired", "auth_expired").await;
}

#[tokio::test]
async fn alg_none_token_is_refused() {
    let unsigned = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims("evil", "n").to_string().as_bytes())
    );
    attack(
        "evil",
        "",
        Some(&unsigned),
        None,
        "invalid token",
        "auth_invalid",
    )
    .await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let stranger = hs256(&json!({"sub": "evil", "aud": "other-service", "exp": now() + 600}));
    attack(
        "evil",
        "",
        Some(&stranger),
        None,
        "audience",
        "auth_invalid",
    )
    .await;
}

#[tokio::test]
async fn token_without_exp_is_refused() {
    let forever = hs256(&json!({"sub": "evil", "aud": AUDIENCE}));
    attack(
        "evil",
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
        "good",
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
        "good",
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
    let (h, mut agent) = hs256_collector().await;
    let victim = hs256(&claims("laptop", "lost-laptop"));
    drop(open(&h, "laptop", "", Some(&victim), None).await.unwrap());
    // Revocation without restart: the same token is refused once its jti is in the
    // file; the other agent's token is not affected.
    let revoked_path = h.collector.dir.path().join("revoked.txt");
    std::fs::write(&revoked_path, "# stolen\nlost-laptop\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match open(&h, "laptop", "", Some(&victim), None).await {
            Err(Refusal::Http(401, body)) => {
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
    let mut second = open(&h, "good", "", Some(&fresh), None).await.unwrap();
    ships(&mut second, 1).await;
    let metrics = h.collector.self_metrics().await;
    assert!(
        metrics.contains("monitoring_ingest_connections_refused_total{reason=\"auth_revoked\"} 1"),
        "{metrics}"
    );
}

/// A key pair for an asymmetric algorithm: the private key PEM (for signing, kept
/// by the test as the `token` command would be) and the public key PEM (all the
/// collector holds).
fn key_pair(alg: Algorithm) -> (String, String) {
    match alg {
        Algorithm::EdDSA => {
            let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
            let private = signing.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
            let public = signing
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap();
            (private, public)
        }
        // RSA keys are slow to generate, so a fixed test-only pair is checked in.
        Algorithm::RS256 => {
            let fixture = |name: &str| {
                std::fs::read_to_string(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/fixtures")
                        .join(name),
                )
                .unwrap()
            };
            (
                fixture("rs256-test-key.pem"),
                fixture("rs256-test-public.pem"),
            )
        }
        other => panic!("not an asymmetric algorithm: {other:?}"),
    }
}

/// A collector verifying `alg` tokens with only the public key (the private key is
/// in the config for the `token` command, which alone reads it).
async fn asymmetric_collector(alg: Algorithm, name: &str) -> (Hardened, EncodingKey, String) {
    let (private, public) = key_pair(alg);
    let dir = tempfile::tempdir().unwrap();
    let public_path = dir.path().join("public.pem");
    let private_path = dir.path().join("private.pem");
    std::fs::write(&public_path, &public).unwrap();
    std::fs::write(&private_path, &private).unwrap();
    let auth = format!(
        "mode = \"jwt\"\nalgorithms = [\"{name}\"]\npublic_key = \"{}\"\nprivate_key = \"{}\"\n",
        public_path.display(),
        private_path.display()
    );
    let h = hardened(&auth, dir).await;
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
    };
    (h, key, public)
}

/// The public key is public: an attacker can HMAC a token with it and hope the
/// collector picks the verification key by the token's header.
async fn refuses_hs256_signed_with_the_public_key(alg: Algorithm, name: &str) {
    let (h, key, public) = asymmetric_collector(alg, name).await;
    let good = sign(alg, &key, &claims("good", "g"));
    let mut agent = open(&h, "good", "", Some(&good), Some("good"))
        .await
        .unwrap();
    ships(&mut agent, 1).await;

    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(public.as_bytes()).unwrap(),
        &claims("evil", "x"),
    );
    refused(
        &h,
        "evil",
        "",
        Some(&confused),
        None,
        "algorithm is not allowed",
    )
    .await;
    ships(&mut agent, 2).await;
}

#[tokio::test]
async fn eddsa_refuses_an_hs256_token_signed_with_the_public_key() {
    refuses_hs256_signed_with_the_public_key(Algorithm::EdDSA, "EdDSA").await;
}

#[tokio::test]
async fn rs256_refuses_an_hs256_token_signed_with_the_public_key() {
    refuses_hs256_signed_with_the_public_key(Algorithm::RS256, "RS256").await;
}

/// Runs `monitoring-collector token` with `config` and returns the token it printed.
fn mint(config: &Path, agent: &str, jti: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_monitoring-collector"))
        .arg("token")
        .arg("--config")
        .arg(config)
        .args(["--agent-id", agent, "--ttl", "12h", "--jti", jti])
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
    token.trim().to_string()
}

#[tokio::test]
async fn rs256_tokens_minted_by_the_cli_are_accepted_and_need_the_matching_certificate() {
    let (h, _, _) = asymmetric_collector(Algorithm::RS256, "RS256").await;
    let token = mint(&h.collector.config_path(), "rsa-agent", "rsa-1");
    let mut agent = open(&h, "rsa-agent", "", Some(&token), None).await.unwrap();
    ships(&mut agent, 1).await;
    // A valid token for rsa-agent, presented with another agent's certificate.
    refused(&h, "thief", "", Some(&token), None, "does not match").await;
    ships(&mut agent, 2).await;
}

#[tokio::test]
async fn a_token_for_one_agent_with_another_agents_certificate_is_refused() {
    let (h, mut agent) = hs256_collector().await;
    let a = hs256(&claims("agent-a", "a-1"));
    refused(&h, "agent-b", "", Some(&a), None, "does not match").await;
    refused(
        &h,
        "agent-b",
        "",
        Some(&a),
        Some("agent-b"),
        "does not match",
    )
    .await;
    ships(&mut agent, 2).await;
    let metrics = h.collector.self_metrics().await;
    assert!(
        metrics.contains("monitoring_ingest_connections_refused_total{reason=\"auth_mismatch\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn tokens_minted_by_the_cli_are_accepted() {
    let (h, _) = hs256_collector().await;
    let token = mint(&h.collector.config_path(), "cli-agent", "cli-1");
    let mut agent = open(&h, "cli-agent", "", Some(&token), None).await.unwrap();
    ships(&mut agent, 1).await;

    // Refused, with a clear reason, when the config is not in jwt mode.
    let plain = common::write_config(h.collector.dir.path(), "plain.toml", "");
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
