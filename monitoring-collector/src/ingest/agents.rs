//! Per-agent state shared by all of an agent's connections: how many are open
//! (`server.max_connections_per_agent`) and its rate budget (`[server.rate_limit]`).
//!
//! A connection holds an [`AgentSlot`] for its whole life; dropping the slot (when
//! the connection ends, panics or is aborted) gives the place back, and the last slot
//! of an agent removes the agent's entry and its buckets, so memory follows the
//! agents connected now, not every agent ever seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::rate_limit::{RateLimitConfig, RateLimiter};
use crate::auth::AgentId;

/// An agent's rate budget, shared by its connections and their batch tasks.
pub(crate) type SharedLimiter = Arc<Mutex<RateLimiter>>;

struct Entry {
    connections: usize,
    /// `None` when `[server.rate_limit]` limits nothing.
    limiter: Option<SharedLimiter>,
}

/// The agents with at least one open connection.
pub(crate) struct Agents {
    max_per_agent: usize,
    rate: RateLimitConfig,
    entries: Mutex<HashMap<AgentId, Entry>>,
}

impl Agents {
    /// At most `max_per_agent` connections per agent, each agent limited by `rate`.
    pub(crate) fn new(max_per_agent: usize, rate: RateLimitConfig) -> Arc<Agents> {
        Arc::new(Agents {
            max_per_agent,
            rate,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// The most connections one agent may have open.
    pub(crate) fn max_per_agent(&self) -> usize {
        self.max_per_agent
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<AgentId, Entry>> {
        // Nothing under this lock can panic halfway through an update; a poisoned
        // lock still holds consistent counts.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more connection of `agent`, or `None` if it has
    /// `max_per_agent` already.
    pub(crate) fn try_acquire(self: &Arc<Self>, agent: &AgentId) -> Option<AgentSlot> {
        let mut entries = self.entries();
        let entry = entries.entry(agent.clone()).or_insert_with(|| Entry {
            connections: 0,
            limiter: (!self.rate.is_unlimited())
                .then(|| Arc::new(Mutex::new(RateLimiter::new(&self.rate, Instant::now())))),
        });
        if entry.connections >= self.max_per_agent {
            // Never left at zero: the entry existed with connections open.
            return None;
        }
        entry.connections += 1;
        Some(AgentSlot {
            agents: Arc::clone(self),
            agent: agent.clone(),
            limiter: entry.limiter.clone(),
        })
    }

    /// Agents with an entry (an open connection).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.entries().len()
    }

    fn release(&self, agent: &AgentId) {
        let mut entries = self.entries();
        if let Some(entry) = entries.get_mut(agent) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 {
                entries.remove(agent);
            }
        }
    }
}

/// One connection's place among its agent's connections; released on drop.
pub(crate) struct AgentSlot {
    agents: Arc<Agents>,
    agent: AgentId,
    limiter: Option<SharedLimiter>,
}

impl AgentSlot {
    /// The agent's rate budget (`None`: unlimited), for the connection's batch tasks.
    pub(crate) fn limiter(&self) -> Option<SharedLimiter> {
        self.limiter.clone()
    }
}

impl Drop for AgentSlot {
    fn drop(&mut self) {
        self.agents.release(&self.agent);
    }
}

/// Charges a batch to `limiter`; `Err` is how long until it would pass.
pub(crate) fn charge(limiter: &SharedLimiter, events: u64, bytes: u64) -> Result<(), Duration> {
    limiter
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .try_charge(events, bytes, Instant::now())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn id(s: &str) -> AgentId {
        AgentId::parse(s).unwrap()
    }

    #[test]
    fn connections_per_agent_are_capped_and_released_on_drop() {
        let agents = Agents::new(2, RateLimitConfig::default());
        let a1 = agents.try_acquire(&id("a")).unwrap();
        let a2 = agents.try_acquire(&id("a")).unwrap();
        assert!(agents.try_acquire(&id("a")).is_none());
        // Another agent is not affected.
        let b1 = agents.try_acquire(&id("b")).unwrap();
        assert_eq!(agents.tracked(), 2);
        drop(a1);
        let a3 = agents.try_acquire(&id("a")).unwrap();
        drop((a2, a3, b1));
        assert_eq!(agents.tracked(), 0, "entries of gone agents are dropped");
    }

    #[test]
    fn a_panicking_connection_still_releases_its_slot() {
        let agents = Agents::new(1, RateLimitConfig::default());
        let slot = agents.try_acquire(&id("a")).unwrap();
        let joined = std::thread::spawn(move || {
            let _slot = slot;
            panic!("connection task failed");
        })
        .join();
        assert!(joined.is_err());
        assert!(agents.try_acquire(&id("a")).is_some());
    }

    #[test]
    fn an_agents_connections_share_one_budget() {
        let rate = RateLimitConfig {
            events_per_sec: 10,
            bytes_per_sec: 0,
            burst_secs: 1,
        };
        let agents = Agents::new(4, rate);
        let first = agents.try_acquire(&id("a")).unwrap();
        let second = agents.try_acquire(&id("a")).unwrap();
        let other = agents.try_acquire(&id("b")).unwrap();
        assert_eq!(charge(&first.limiter().unwrap(), 10, 0), Ok(()));
        assert!(charge(&second.limiter().unwrap(), 5, 0).is_err());
        assert_eq!(charge(&other.limiter().unwrap(), 10, 0), Ok(()));
    }

    #[test]
    fn no_buckets_when_nothing_is_limited() {
        let rate = RateLimitConfig {
            events_per_sec: 0,
            bytes_per_sec: 0,
            burst_secs: 1,
        };
        let agents = Agents::new(1, rate);
        assert!(agents.try_acquire(&id("a")).unwrap().limiter().is_none());
    }
}
