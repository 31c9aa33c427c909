//! REST API authentication against the real collector binary: users added and tokens
//! created with the real `user` and `api-token` commands, logins, sessions by cookie
//! and by bearer, roles, expiry, revocation without restart and `open_read`. The
//! `Secure` cookie over HTTPS is in `api_auth_https.rs`.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::time::{Duration, Instant};

use common::Collector;
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use serde_json::{Value, json};

const ALICE_PASSWORD: &str = "alice's long password";

/// A collector whose API requires credentials.
async fn strict() -> Collector {
    Collector::start_with_api_auth("", "", "", "", tempfile::tempdir().unwrap()).await
}

/// Runs the CLI and asserts it succeeded; its stdout.
fn cli_ok(collector: &Collector, args: &[&str], stdin: &str) -> String {
    let out = collector.cli(args, stdin);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Creates an API token with the CLI.
fn token(collector: &Collector, name: &str, role: &str, ttl: Option<&str>) -> String {
    let mut args = vec!["api-token", "create", "--name", name, "--role", role];
    if let Some(ttl) = ttl {
        args.extend(["--ttl", ttl]);
    }
    let out = cli_ok(collector, &args, "");
    let token = out.trim_end().to_string();
    assert_eq!(out, format!("{token}\n"), "only the token is printed");
    assert!(token.starts_with("mcapi_"), "{token}");
    token
}

/// A request's status, `WWW-Authenticate`, `Set-Cookie` and JSON body.
struct Answer {
    status: u16,
    challenge: Option<String>,
    cookie: Option<String>,
    body: Value,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_string())
    };
    let (challenge, cookie) = (header(WWW_AUTHENTICATE), header(SET_COOKIE));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        challenge,
        cookie,
        body,
    }
}

async fn get(collector: &Collector, path: &str, bearer: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().get(collector.url(path));
    if let Some(token) = bearer {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    send(request).await
}

async fn login(collector: &Collector, username: &str, password: &str) -> Answer {
    let request = reqwest::Client::new()
        .post(collector.url("/api/v1/login"))
        .json(&json!({"username": username, "password": password}));
    send(request).await
}

/// Polls `path` with `bearer` until it answers `status` (a change made by the CLI
/// is seen within ~2 s); the last answer.
async fn eventually(collector: &Collector, path: &str, bearer: &str, status: u16) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = get(collector, path, Some(bearer)).await;
        if answer.status == status || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the counter line starting with `series` in an exposition; 0 if absent.
fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |value| value.parse().unwrap())
}

/// An admin API token made with the CLI, once the collector has loaded it (so that
/// what follows does not depend on when the file is next re-read).
async fn loaded_admin_token(collector: &Collector, name: &str) -> String {
    let admin = token(collector, name, "admin", None);
    let answer = eventually(collector, "/api/v1/users", &admin, 200).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    admin
}

async fn self_metrics(collector: &Collector, admin: &str) -> String {
    let metrics = get(collector, "/metrics", Some(admin)).await;
    assert_eq!(metrics.status, 200);
    metrics.body.as_str().unwrap().to_string()
}

fn assert_unauthorized(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 401, "{what}: {:?}", answer.body);
    assert_eq!(answer.challenge.as_deref(), Some("Bearer"), "{what}");
    assert!(
        answer.body["error"].is_string(),
        "{what}: {:?}",
        answer.body
    );
}

const PROTECTED_GETS: [&str; 7] = [
    "/metrics",
    "/api/v1/agents",
    "/api/v1/logs",
    "/api/v1/metrics?name=host_cpu_usage_percent",
    "/api/v1/metrics/names",
    "/api/v1/whoami",
    "/api/v1/users",
];

#[tokio::test]
async fn every_protected_endpoint_needs_credentials_and_the_open_ones_do_not() {
    let collector = strict().await;
    let admin = loaded_admin_token(&collector, "admin").await;
    let invalid = "monitoring_api_requests_refused_total{reason=\"invalid\"}";
    let invalid_before = counter(&self_metrics(&collector, &admin).await, invalid);
    for path in PROTECTED_GETS {
        let answer = get(&collector, path, None).await;
        assert_unauthorized(&answer, path);
        assert_eq!(
            answer.body["error"],
            "authentication required: send `Authorization: Bearer <token>` or log in with POST /api/v1/login"
        );
    }
    let logout = send(reqwest::Client::new().post(collector.url("/api/v1/logout"))).await;
    assert_unauthorized(&logout, "logout");
    for path in ["/health", "/ready", "/api/v1/openapi.json"] {
        assert_eq!(get(&collector, path, None).await.status, 200, "{path}");
    }

    // Tokens are never read from the URL, a wrong scheme is not a bearer token, and
    // a token that was never issued is refused like any invalid one.
    for path in [
        format!("/api/v1/agents?token={admin}"),
        format!("/api/v1/agents?access_token={admin}"),
    ] {
        assert_unauthorized(&get(&collector, &path, None).await, &path);
    }
    let basic = send(
        reqwest::Client::new()
            .get(collector.url("/api/v1/agents"))
            .header(AUTHORIZATION, format!("Basic {admin}")),
    )
    .await;
    assert_unauthorized(&basic, "basic");
    let forged = format!("mcapi_{}", "A".repeat(43));
    let answer = get(&collector, "/api/v1/agents", Some(&forged)).await;
    assert_unauthorized(&answer, "forged");
    assert_eq!(answer.body["error"], "invalid credentials");

    // Unknown paths and methods answer as before, whoever asks.
    assert_eq!(get(&collector, "/api/v1/nothing", None).await.status, 404);
    let wrong_method = send(reqwest::Client::new().delete(collector.url("/api/v1/logs"))).await;
    assert_eq!(wrong_method.status, 405);

    let text = self_metrics(&collector, &admin).await;
    assert_eq!(
        counter(
            &text,
            "monitoring_api_requests_refused_total{reason=\"missing\"}"
        ),
        10,
        "{text}"
    );
    assert_eq!(counter(&text, invalid) - invalid_before, 2, "{text}");
}

#[tokio::test]
async fn users_added_with_the_cli_log_in_and_sessions_work_by_cookie_and_bearer() {
    let collector = strict().await;
    let out = cli_ok(
        &collector,
        &[
            "user",
            "add",
            "--name",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
        ],
        &format!("{ALICE_PASSWORD}\n"),
    );
    assert_eq!(
        out, "",
        "nothing on stdout when the password came from stdin"
    );

    // Refusals of the CLI: an existing name, a short password.
    let again = collector.cli(&["user", "add", "--name", "alice", "--role", "read"], "");
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--replace"),
        "{stderr}"
    );
    let short = collector.cli(
        &[
            "user",
            "add",
            "--name",
            "bob",
            "--role",
            "read",
            "--password-stdin",
        ],
        "short\n",
    );
    assert_eq!(short.status.code(), Some(1), "{short:?}");
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12"));

    // A generated password is printed once, alone.
    let generated = cli_ok(
        &collector,
        &["user", "add", "--name", "bob", "--role", "read"],
        "",
    );
    let bob_password = generated.trim_end();
    assert_eq!(bob_password.len(), 24, "{generated:?}");
    let list = cli_ok(&collector, &["user", "list"], "");
    assert!(
        list.starts_with("NAME   ROLE   CREATED\nalice  admin  "),
        "{list}"
    );
    assert!(list.contains("\nbob    read   "), "{list}");

    // The running collector sees the new users within ~2 s.
    let admin = loaded_admin_token(&collector, "ops").await;
    let bob = login(&collector, "bob", bob_password).await;
    assert_eq!(bob.status, 200, "{:?}", bob.body);
    assert_eq!(bob.body["role"], "read");

    // Wrong password and unknown user: the same refusal.
    let wrong = login(&collector, "alice", "not alice's password").await;
    let unknown = login(&collector, "mallory", ALICE_PASSWORD).await;
    assert_unauthorized(&wrong, "wrong password");
    assert_unauthorized(&unknown, "unknown user");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(
        wrong.body,
        json!({"error": "invalid user name or password"})
    );
    assert!(wrong.cookie.is_none());

    let alice = login(&collector, "alice", ALICE_PASSWORD).await;
    assert_eq!(alice.status, 200, "{:?}", alice.body);
    let session = alice.body["token"].as_str().unwrap().to_string();
    assert!(session.starts_with("mcses_"), "{session}");
    assert_eq!(alice.body["role"], "admin");
    let expires_at = alice.body["expires_at"].as_str().unwrap();
    assert!(
        expires_at.ends_with('Z') && expires_at.len() == 20,
        "{expires_at}"
    );
    let cookie = alice.cookie.unwrap();
    assert_eq!(
        cookie,
        format!("monitoring_session={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"),
        "no Secure over plain HTTP"
    );

    let me = json!({"name": "alice", "role": "admin", "kind": "user"});
    let by_bearer = get(&collector, "/api/v1/whoami", Some(&session)).await;
    assert_eq!((by_bearer.status, &by_bearer.body), (200, &me));
    let cookie_header = format!("theme=dark; monitoring_session={session}");
    let whoami_by_cookie = || {
        send(
            reqwest::Client::new()
                .get(collector.url("/api/v1/whoami"))
                .header(COOKIE, cookie_header.clone()),
        )
    };
    let by_cookie = whoami_by_cookie().await;
    assert_eq!((by_cookie.status, &by_cookie.body), (200, &me));
    let users = send(
        reqwest::Client::new()
            .get(collector.url("/api/v1/users"))
            .header(COOKIE, cookie_header.clone()),
    )
    .await;
    assert_eq!(users.status, 200, "{:?}", users.body);
    let bob_session = bob.body["token"].as_str().unwrap();
    let forbidden = get(&collector, "/api/v1/users", Some(bob_session)).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(
        forbidden.body,
        json!({"error": "this endpoint needs the admin role"})
    );

    // Logout ends the session (by cookie here) and clears the cookie.
    let logout = send(
        reqwest::Client::new()
            .post(collector.url("/api/v1/logout"))
            .header(COOKIE, cookie_header.clone()),
    )
    .await;
    assert_eq!(
        (logout.status, &logout.body),
        (200, &json!({"logged_out": true}))
    );
    assert!(logout.cookie.unwrap().starts_with("monitoring_session=; "));
    assert_unauthorized(&whoami_by_cookie().await, "after logout (cookie)");
    let after = get(&collector, "/api/v1/whoami", Some(&session)).await;
    assert_unauthorized(&after, "after logout (bearer)");
    assert_eq!(after.body["error"], "invalid credentials");

    // Removing a user ends their sessions at the next reload.
    assert_eq!(
        get(&collector, "/api/v1/agents", Some(bob_session))
            .await
            .status,
        200
    );
    cli_ok(&collector, &["user", "remove", "--name", "bob"], "");
    let gone = eventually(&collector, "/api/v1/agents", bob_session, 401).await;
    assert_unauthorized(&gone, "removed user");

    // Logins are counted by outcome; a bad body is a 4xx, not a 500.
    let form = send(
        reqwest::Client::new()
            .post(collector.url("/api/v1/login"))
            .body("username=alice&password=x"),
    )
    .await;
    assert_eq!(form.status, 415, "{:?}", form.body);
    let text = self_metrics(&collector, &admin).await;
    for line in [
        "monitoring_api_logins_total{outcome=\"success\"} 2",
        "monitoring_api_logins_total{outcome=\"failure\"} 2",
        "monitoring_api_logins_total{outcome=\"bad_request\"} 1",
        "monitoring_api_requests_refused_total{reason=\"forbidden\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
}

#[tokio::test]
async fn api_tokens_have_roles_expire_and_are_revoked_without_restart() {
    let collector = strict().await;
    cli_ok(
        &collector,
        &[
            "user",
            "add",
            "--name",
            "carol",
            "--role",
            "read",
            "--password-stdin",
        ],
        "carol's long password\n",
    );
    let reader = token(&collector, "grafana", "read", Some("90d"));
    let admin = token(&collector, "ops", "admin", None);
    let short = token(&collector, "short", "read", Some("1s"));
    let duplicate = collector.cli(
        &["api-token", "create", "--name", "ops", "--role", "read"],
        "",
    );
    assert_eq!(duplicate.status.code(), Some(1), "{duplicate:?}");

    // The collector started before the file existed; it sees it within ~2 s.
    let answer = eventually(&collector, "/api/v1/agents", &reader, 200).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body, json!({"agents": []}));
    let me = get(&collector, "/api/v1/whoami", Some(&reader)).await;
    assert_eq!(
        me.body,
        json!({"name": "grafana", "role": "read", "kind": "token"})
    );
    for path in PROTECTED_GETS.iter().filter(|p| **p != "/api/v1/users") {
        assert_eq!(
            get(&collector, path, Some(&reader)).await.status,
            200,
            "{path}"
        );
    }
    let forbidden = get(&collector, "/api/v1/users", Some(&reader)).await;
    assert_eq!(forbidden.status, 403);
    assert!(forbidden.challenge.is_none());

    let users = get(&collector, "/api/v1/users", Some(&admin)).await;
    assert_eq!(users.status, 200);
    assert_eq!(
        users.body["users"],
        json!([{"name": "carol", "role": "read", "created": users.body["users"][0]["created"]}])
    );
    let tokens = users.body["tokens"].as_array().unwrap();
    let names: Vec<&str> = tokens.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["grafana", "ops", "short"]);
    assert!(tokens[0]["expires"].is_string());
    assert!(tokens[1]["expires"].is_null());
    let text = users.body.to_string();
    for secret in ["argon2", "sha256", "hash", &reader, &admin] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    // An expired token is refused as expired.
    let expired = eventually(&collector, "/api/v1/agents", &short, 401).await;
    assert_unauthorized(&expired, "expired token");
    assert_eq!(expired.body["error"], "credentials have expired");
    let list = cli_ok(&collector, &["api-token", "list"], "");
    assert!(list.contains("(expired)"), "{list}");

    // Revoked with the CLI: refused within ~2 s, without a restart.
    cli_ok(
        &collector,
        &["api-token", "revoke", "--name", "grafana"],
        "",
    );
    let revoked = eventually(&collector, "/api/v1/agents", &reader, 401).await;
    assert_unauthorized(&revoked, "revoked token");
    assert_eq!(revoked.body["error"], "invalid credentials");
    assert_eq!(
        get(&collector, "/api/v1/agents", Some(&admin)).await.status,
        200
    );
    let again = collector.cli(&["api-token", "revoke", "--name", "grafana"], "");
    assert_eq!(again.status.code(), Some(1), "{again:?}");
}

#[tokio::test]
async fn open_read_lets_reads_through_but_not_the_admin_endpoints() {
    let collector = Collector::start_with_api_auth(
        "",
        "",
        "open_read = true",
        "",
        tempfile::tempdir().unwrap(),
    )
    .await;
    for path in PROTECTED_GETS.iter().filter(|p| **p != "/api/v1/users") {
        assert_eq!(get(&collector, path, None).await.status, 200, "{path}");
    }
    let me = get(&collector, "/api/v1/whoami", None).await;
    assert_eq!(
        me.body,
        json!({"name": "anonymous", "role": "read", "kind": "anonymous"})
    );
    assert_unauthorized(&get(&collector, "/api/v1/users", None).await, "users");
    // Credentials, when given, must still be valid.
    assert_unauthorized(
        &get(&collector, "/api/v1/agents", Some("mcapi_nope")).await,
        "bad token",
    );
    let admin = token(&collector, "ops", "admin", None);
    let users = eventually(&collector, "/api/v1/users", &admin, 200).await;
    assert_eq!(users.status, 200, "{:?}", users.body);
}
