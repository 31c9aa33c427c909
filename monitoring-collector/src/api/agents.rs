//! `GET /api/v1/agents`: the agent inventory.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use monitoring_common::event::now_ns;
use serde::Serialize;

use super::params::Params;
use super::time::format_rfc3339_nanos;
use super::{AppError, AppState, blocking};
use crate::storage::AgentRecord;

/// An agent seen within this long is "online".
pub(crate) const ONLINE_WINDOW_NS: i64 = 60 * 1_000_000_000;

/// The response body.
#[derive(Debug, Serialize)]
pub(crate) struct AgentsResponse {
    agents: Vec<AgentOut>,
}

/// One agent as the API shows it.
#[derive(Debug, Serialize, PartialEq)]
struct AgentOut {
    id: String,
    hostname: Option<String>,
    os: Option<String>,
    kernel_version: Option<String>,
    last_seen: String,
    last_seen_ms: i64,
    cpu_percent: Option<f64>,
    memory_percent: Option<f64>,
    status: &'static str,
}

impl AgentOut {
    fn new(a: AgentRecord, now: i64) -> AgentOut {
        let online = now.saturating_sub(a.last_seen_ns) < ONLINE_WINDOW_NS;
        AgentOut {
            id: a.id,
            hostname: a.hostname,
            os: a.os,
            kernel_version: a.kernel_version,
            last_seen: format_rfc3339_nanos(a.last_seen_ns),
            last_seen_ms: a.last_seen_ns.div_euclid(1_000_000),
            cpu_percent: a.cpu_percent,
            memory_percent: a.memory_percent,
            status: if online { "online" } else { "offline" },
        }
    }
}

/// `GET /api/v1/agents`.
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<AgentsResponse>, AppError> {
    Params::parse(query, &[], &[])?;
    let agents = blocking(&state.store, |s| s.agents()).await?;
    let now = now_ns();
    Ok(Json(AgentsResponse {
        agents: agents.into_iter().map(|a| AgentOut::new(a, now)).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_last_seen() {
        let record = |last_seen_ns| AgentRecord {
            id: "a".into(),
            hostname: None,
            os: None,
            kernel_version: None,
            last_seen_ns,
            cpu_percent: Some(1.5),
            memory_percent: None,
        };
        let now = 1_000_000_000_000;
        let fresh = AgentOut::new(record(now - 59_000_000_000), now);
        assert_eq!(fresh.status, "online");
        assert_eq!(fresh.last_seen_ms, 941_000);
        assert_eq!(fresh.last_seen, "1970-01-01T00:15:41.000000000Z");
        assert_eq!(
            AgentOut::new(record(now - 61_000_000_000), now).status,
            "offline"
        );
    }
}
