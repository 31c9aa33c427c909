//! `GET /api/v1/openapi.json`: an OpenAPI 3.0 description of the API, written by
//! hand beside the handlers it describes (a generator would be a heavy dependency
//! for a dozen endpoints). A test checks that every route is described.

use axum::Json;
use serde_json::{Value, json};

fn param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn time_param(name: &str, description: &str) -> Value {
    param(
        name,
        &format!("{description} RFC 3339 (2024-05-06T07:08:09Z) or Unix milliseconds."),
        json!({"type": "string"}),
    )
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn error_responses() -> Value {
    json!({
        "400": {"description": "Bad parameter.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "500": {"description": "Store failure.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    })
}

fn get(summary: &str, parameters: Value, response: Value) -> Value {
    let mut responses = error_responses();
    responses["200"] = response;
    json!({"get": {"summary": summary, "parameters": parameters, "responses": responses}})
}

fn schemas() -> Value {
    let nullable_string = json!({"type": "string", "nullable": true});
    let nullable_number = json!({"type": "number", "nullable": true});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Agent": {"type": "object", "properties": {
            "id": {"type": "string"},
            "hostname": nullable_string, "os": nullable_string, "kernel_version": nullable_string,
            "last_seen": {"type": "string", "format": "date-time"},
            "last_seen_ms": {"type": "integer", "format": "int64"},
            "cpu_percent": nullable_number, "memory_percent": nullable_number,
            "status": {"type": "string", "enum": ["online", "offline"], "description": "online if seen in the last 60 seconds"}
        }},
        "Flow": {"type": "object", "properties": {
            "timestamp": {"type": "string", "format": "date-time", "description": "Start of the capture interval"},
            "end": {"type": "string", "format": "date-time", "description": "End of the capture interval"},
            "timestamp_ns": {"type": "integer", "format": "int64"},
            "end_ns": {"type": "integer", "format": "int64"},
            "agent_id": {"type": "string"},
            "source": {"type": "string", "description": "Interface or savefile"},
            "labels": string_map.clone(),
            "src_addr": {"type": "string", "description": "The side that opened the flow"},
            "dst_addr": {"type": "string"},
            "src_port": {"type": "integer"},
            "dst_port": {"type": "integer"},
            "protocol": {"type": "integer", "description": "IP protocol number (6 TCP, 17 UDP)"},
            "bytes_out": {"type": "integer", "description": "Source to destination"},
            "bytes_in": {"type": "integer", "description": "Destination to source"},
            "packets_out": {"type": "integer"},
            "packets_in": {"type": "integer"},
            "bytes": {"type": "integer", "description": "Both directions"},
            "packets": {"type": "integer", "description": "Both directions"},
            "tcp_flags": {"type": "integer", "description": "Union of the TCP flags seen"}
        }},
        "Log": {"type": "object", "properties": {
            "timestamp": {"type": "string", "format": "date-time", "description": "UTC, nanosecond precision"},
            "timestamp_ns": {"type": "integer", "format": "int64"},
            "agent_id": {"type": "string"},
            "source": {"type": "string"},
            "severity": {"type": "string", "nullable": true, "enum": ["emergency", "alert", "critical", "error", "warning", "notice", "info", "debug", "trace", null]},
            "message": {"type": "string"},
            "labels": string_map,
            "fields": {"type": "object", "additionalProperties": true}
        }},
        "Principal": {"type": "object", "required": ["name", "role", "kind"], "properties": {
            "name": {"type": "string", "description": "User or token name; `anonymous` without credentials"},
            "role": {"type": "string", "enum": ["read", "admin"]},
            "kind": {"type": "string", "enum": ["user", "token", "anonymous"]}
        }},
        "Series": {"type": "object", "properties": {
            "name": {"type": "string"},
            "agent_id": {"type": "string"},
            "labels": string_map,
            "kind": {"type": "string", "enum": ["gauge", "counter", "histogram", "summary"]},
            "points": {"type": "array", "description": "[Unix ms, value] pairs, oldest first; histograms and summaries give their sum",
                "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}}}
        }}
    })
}

fn paths() -> Value {
    let none = json!([]);
    json!({
        "/health": get("Liveness: the process is up.", none.clone(),
            ok("Always.", json!({"type": "object", "properties": {"status": {"type": "string", "enum": ["ok"]}}}))),
        "/ready": {"get": {"summary": "Readiness: the store can be written.", "responses": {
            "200": ok("Ready.", json!({"type": "object", "properties": {"status": {"type": "string", "enum": ["ready"]}}})),
            "503": ok("Not ready.", json!({"type": "object", "properties": {"status": {"type": "string"}, "error": {"type": "string"}}}))
        }}},
        "/metrics": {"get": {"summary": "The collector's own metrics.", "responses": {
            "200": {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {"schema": {"type": "string"}}}}
        }}},
        "/api/v1/agents": get("The agent inventory, sorted by id.", none.clone(),
            ok("Agents.", json!({"type": "object", "properties": {"agents": {"type": "array", "items": {"$ref": "#/components/schemas/Agent"}}}}))),
        "/api/v1/logs": get("Search logs.", json!([
            param("q", "Full-text query over messages; words are ANDed.", json!({"type": "string"})),
            param("agent", "Only this agent.", json!({"type": "string"})),
            param("source", "Only this source (exact).", json!({"type": "string"})),
            param("severity", "Minimum severity: `warning` returns warning and worse.", json!({"type": "string", "enum": ["emergency", "alert", "critical", "error", "warning", "notice", "info", "debug", "trace"]})),
            time_param("from", "From this time, inclusive."),
            time_param("to", "To this time, exclusive."),
            param("limit", "Results per page; default 100, larger values are clamped to 10000.", json!({"type": "integer", "minimum": 1})),
            param("cursor", "`next_cursor` of the previous page.", json!({"type": "string"})),
            param("order", "By time; default desc (newest first).", json!({"type": "string", "enum": ["asc", "desc"]}))
        ]), ok("A page of logs.", json!({"type": "object", "properties": {
            "logs": {"type": "array", "items": {"$ref": "#/components/schemas/Log"}},
            "next_cursor": {"type": "string", "nullable": true, "description": "null on the last page"}
        }}))),
        "/api/v1/flows": get("Traffic flows captured by agents (one per flow and capture interval), newest first.", json!([
            param("agent", "Only this agent.", json!({"type": "string"})),
            param("addr", "Only flows with this IP address on either side.", json!({"type": "string"})),
            param("port", "Only flows with this port on either side.", json!({"type": "integer", "minimum": 0, "maximum": 65535})),
            param("protocol", "tcp, udp, icmp, icmpv6 or an IP protocol number.", json!({"type": "string"})),
            time_param("from", "Interval start from this time, inclusive."),
            time_param("to", "Interval start before this time."),
            param("limit", "At most this many; default 100, larger values are clamped to 10000.", json!({"type": "integer", "minimum": 1}))
        ]), ok("Flows.", json!({"type": "object", "properties": {"flows": {"type": "array", "items": {"$ref": "#/components/schemas/Flow"}}}}))),
        "/api/v1/metrics": get("Series of one metric.", json!([
            {"name": "name", "in": "query", "required": true, "description": "Metric name (exact).", "schema": {"type": "string"}},
            param("agent", "Only this agent.", json!({"type": "string"})),
            {"name": "label", "in": "query", "required": false, "description": "key=value; repeat to require several labels.",
                "schema": {"type": "array", "items": {"type": "string"}}, "style": "form", "explode": true},
            time_param("from", "Default: one hour before `to`."),
            time_param("to", "Default: now."),
            param("step", "Bucket width: seconds (30) or a duration (500ms, 30s, 5m, 1h, 1d). Each bucket is the average of its samples, stamped at its start. Absent: raw samples. At most 11000 buckets.", json!({"type": "string"}))
        ]), ok("Series.", json!({"type": "object", "properties": {"series": {"type": "array", "items": {"$ref": "#/components/schemas/Series"}}}}))),
        "/api/v1/metrics/names": get("Known metric names, sorted.", none,
            ok("Names.", json!({"type": "object", "properties": {"names": {"type": "array", "items": {"type": "string"}}}}))),
        "/api/v1/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "OpenAPI 3.0 document."}}}},
        "/api/v1/login": {"post": {
            "summary": "Log in with a user's password: a session token, also set as the `monitoring_session` cookie (HttpOnly, SameSite=Strict; Secure over HTTPS). Sessions are kept in the memory of this collector: they end at its restart.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
                "required": ["username", "password"], "additionalProperties": false,
                "properties": {"username": {"type": "string"}, "password": {"type": "string", "format": "password"}}}}}},
            "responses": {
                "200": ok("Logged in.", json!({"type": "object", "properties": {
                    "token": {"type": "string", "description": "Session token: send it as `Authorization: Bearer <token>` or rely on the cookie"},
                    "role": {"type": "string", "enum": ["read", "admin"]},
                    "expires_at": {"type": "string", "format": "date-time"}
                }})),
                "400": error_ref("Not the expected JSON."),
                "401": error_ref("Unknown user or wrong password (not told apart)."),
                "415": error_ref("Not `Content-Type: application/json`."),
                "429": error_ref("Too many logins in progress; retry after `Retry-After` seconds.")
            }
        }},
        "/api/v1/logout": {"post": {"summary": "End the session the request is made with (an API token stays valid) and clear the cookie.", "responses": {
            "200": ok("Logged out.", json!({"type": "object", "properties": {"logged_out": {"type": "boolean", "description": "whether a session was ended"}}}))
        }}},
        "/api/v1/whoami": {"get": {"summary": "Who the credentials belong to.", "responses": {
            "200": ok("The caller.", json!({"$ref": "#/components/schemas/Principal"}))
        }}},
        "/api/v1/users": {"get": {"summary": "Users and API tokens (never their hashes). Admin only.", "responses": {
            "200": ok("Users and tokens.", json!({"type": "object", "properties": {
                "users": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "role": {"type": "string", "enum": ["read", "admin"]},
                    "created": {"type": "string", "format": "date-time"}
                }}},
                "tokens": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "role": {"type": "string", "enum": ["read", "admin"]},
                    "created": {"type": "string", "format": "date-time"},
                    "expires": {"type": "string", "format": "date-time", "nullable": true, "description": "null: until revoked"},
                    "expired": {"type": "boolean"}
                }}}
            }}))
        }}}
    })
}

fn error_ref(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// Paths anyone may call.
const OPEN: [&str; 4] = ["/health", "/ready", "/api/v1/openapi.json", "/api/v1/login"];

/// Marks open operations as needing no security and adds the refusals to the others.
fn secure(mut paths: Value) -> Value {
    let Some(paths) = paths.as_object_mut().map(std::mem::take) else {
        return paths;
    };
    let mut out = serde_json::Map::new();
    for (path, mut item) in paths {
        if let Some(operations) = item.as_object_mut() {
            for operation in operations.values_mut() {
                if OPEN.contains(&path.as_str()) {
                    operation["security"] = json!([]);
                    continue;
                }
                let responses = &mut operation["responses"];
                responses["401"] = error_ref(
                    "No credentials, or invalid or expired ones (with `WWW-Authenticate: Bearer`).",
                );
                if path == "/api/v1/users" {
                    responses["403"] = error_ref("The credentials do not have the admin role.");
                }
            }
        }
        out.insert(path, item);
    }
    Value::Object(out)
}

/// The document.
pub(crate) fn spec() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "monitoring-collector REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Query what agents sent. Times are RFC 3339 or Unix milliseconds; errors are {\"error\": \"...\"} with a fitting status. Read endpoints need the `read` role (unless the collector sets `[api.auth] open_read`), /api/v1/users the `admin` role: send an API token (`monitoring-collector api-token create`) or a session token from POST /api/v1/login as `Authorization: Bearer <token>`, or the session cookie. Tokens in the URL are never read."
        },
        "paths": secure(paths()),
        "security": [{"bearer": []}, {"session_cookie": []}],
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (mcapi_...) or a session token (mcses_...)."},
                "session_cookie": {"type": "apiKey", "in": "cookie", "name": "monitoring_session"}
            }
        }
    })
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn document() -> Json<Value> {
    Json(spec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described() {
        let spec = spec();
        for path in [
            "/health",
            "/ready",
            "/metrics",
            "/api/v1/agents",
            "/api/v1/logs",
            "/api/v1/flows",
            "/api/v1/metrics",
            "/api/v1/metrics/names",
            "/api/v1/openapi.json",
            "/api/v1/whoami",
            "/api/v1/users",
        ] {
            assert!(
                spec["paths"][path]["get"]["responses"]["200"].is_object(),
                "{path}"
            );
        }
        for path in ["/api/v1/login", "/api/v1/logout"] {
            assert!(
                spec["paths"][path]["post"]["responses"]["200"].is_object(),
                "{path}"
            );
        }
        assert_eq!(
            spec["paths"]["/api/v1/logs"]["get"]["parameters"]
                .as_array()
                .map(Vec::len),
            Some(9)
        );
    }

    #[test]
    fn security_is_described() {
        let spec = spec();
        assert_eq!(
            spec["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        for open in OPEN {
            let operation = spec["paths"][open]
                .as_object()
                .and_then(|item| item.values().next())
                .unwrap();
            assert_eq!(operation["security"], json!([]), "{open}");
            assert!(operation["responses"]["401"].is_null() || open == "/api/v1/login");
        }
        assert!(spec["paths"]["/api/v1/logs"]["get"]["responses"]["401"].is_object());
        assert!(spec["paths"]["/api/v1/logs"]["get"]["security"].is_null());
        assert!(spec["paths"]["/api/v1/users"]["get"]["responses"]["403"].is_object());
        assert!(spec["paths"]["/metrics"]["get"]["responses"]["401"].is_object());
    }
}
