//! The open-file limit. Every agent connection is a file descriptor, as are the
//! listeners, API connections and the store's files. Service managers start daemons
//! with a low soft limit (systemd: 1,024, under a hard limit of 524,288), which about
//! 1,000 agents exhaust: accept then fails with EMFILE, and worse, the SQLite store
//! cannot open its day file, so every agent's batches are answered retry-later, not
//! only the newest connection's (measured with the swarm load tool,
//! `benches/src/swarm`). So at start the collector raises its soft limit to the hard
//! limit, as Go programs do, and warns when even that is short of what
//! `server.max_connections` needs.

/// Descriptors kept beside the agent connections: listeners, connections waiting
/// for their upgrade, API clients, store files and their read pools, sinks.
pub const RESERVED: u64 = 256;

/// What [`raise`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit at start.
    pub before: u64,
    /// The soft limit now.
    pub now: u64,
    /// What `max_connections` connections need, [`RESERVED`] included.
    pub needed: u64,
}

impl NofileLimit {
    /// Whether the limit may run out before `server.max_connections` is reached.
    pub fn is_short(&self) -> bool {
        self.now < self.needed
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit.
pub fn raise(max_connections: usize) -> std::io::Result<NofileLimit> {
    let (before, _hard) = rlimit::Resource::NOFILE.get()?;
    let now = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(NofileLimit {
        before,
        now: now.max(before),
        needed: (max_connections as u64).saturating_add(RESERVED),
    })
}

/// Raises the limit and logs the outcome: INFO when it was raised, WARN when it is
/// short of `max_connections` (or cannot be read).
pub fn raise_and_log(max_connections: usize) {
    match raise(max_connections) {
        Ok(limit) => {
            if limit.now > limit.before {
                tracing::info!(
                    message = "Raised the open-file limit.",
                    from = limit.before,
                    to = limit.now
                );
            }
            if limit.is_short() {
                tracing::warn!(
                    message = "The open-file limit is below what server.max_connections needs: agents beyond it will fail to connect and the store may fail to open files. Raise the hard limit (systemd: LimitNOFILE=) or lower server.max_connections.",
                    limit = limit.now,
                    max_connections,
                    needed = limit.needed
                );
            }
        }
        Err(error) => {
            tracing::warn!(message = "Cannot read or raise the open-file limit.", %error);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise(10).unwrap();
        let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!(soft, hard);
        assert_eq!(limit.now, soft);
        assert_eq!(limit.needed, 10 + RESERVED);
    }
}
