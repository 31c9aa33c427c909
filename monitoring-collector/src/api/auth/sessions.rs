//! Login sessions: random 256-bit tokens, kept in memory by their SHA-256 digest with
//! an expiry.
//!
//! Sessions belong to one collector process: a restart logs everybody out, and
//! collectors behind a load balancer do not share them. A session remembers a
//! digest of its user's password hash at login, so that the guard can end it when
//! the user is removed from the users file or gets a new password (checked on every
//! use against the file as last reloaded). At most [`MAX_SESSIONS`] are kept; when
//! full, expired ones are dropped first, then the one closest to expiry.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::secret::{Digest256, new_session_token, sha256};

/// Most sessions kept at once.
pub const MAX_SESSIONS: usize = 10_000;

/// One login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user who logged in.
    pub user: String,
    /// SHA-256 of the user's password hash at login.
    pub credential: Digest256,
    /// Unix seconds after which the session is over.
    pub expires: i64,
}

/// What [`Sessions::get`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A live session.
    Valid(Session),
    /// The session has expired (and is now removed).
    Expired,
    /// No such session (never created, logged out, evicted, or before a restart).
    Unknown,
}

/// The sessions of this process.
#[derive(Debug)]
pub struct Sessions {
    ttl_secs: i64,
    map: Mutex<HashMap<Digest256, Session>>,
}

impl Sessions {
    /// No sessions; new ones last `ttl_secs`.
    pub fn new(ttl_secs: u64) -> Sessions {
        Sessions {
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session for `user` whose password hash is `password_hash`, at `now`
    /// (Unix seconds): the token (given only here) and its expiry.
    pub fn create(&self, user: &str, password_hash: &str, now: i64) -> (String, i64) {
        let token = new_session_token();
        let expires = now.saturating_add(self.ttl_secs);
        let session = Session {
            user: user.to_owned(),
            credential: sha256(password_hash),
            expires,
        };
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(digest, _)| *digest)
        {
            map.remove(&oldest);
        }
        map.insert(sha256(&token), session);
        (token, expires)
    }

    /// The session of `token` at `now`; an expired one is removed.
    pub fn get(&self, token: &str, now: i64) -> Lookup {
        let digest = sha256(token);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&digest) {
            None => Lookup::Unknown,
            Some(session) if session.expires <= now => {
                map.remove(&digest);
                Lookup::Expired
            }
            Some(session) => Lookup::Valid(session.clone()),
        }
    }

    /// Ends the session whose token has this digest; whether it existed.
    pub fn remove(&self, digest: &Digest256) -> bool {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest)
            .is_some()
    }

    /// Sessions kept (including expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_can_be_removed() {
        let sessions = Sessions::new(60);
        let (token, expires) = sessions.create("alice", "$hash", 1_000);
        assert_eq!(expires, 1_060);
        assert!(token.starts_with("mcses_"));
        let Lookup::Valid(session) = sessions.get(&token, 1_059) else {
            panic!("no session")
        };
        assert_eq!(session.user, "alice");
        assert_eq!(session.credential, sha256("$hash"));
        assert_eq!(sessions.get("mcses_other", 1_000), Lookup::Unknown);
        assert_eq!(sessions.get(&token, 1_060), Lookup::Expired);
        assert_eq!(
            sessions.get(&token, 1_000),
            Lookup::Unknown,
            "expired ones are dropped"
        );

        let (token, _) = sessions.create("bob", "$hash", 1_000);
        assert!(sessions.remove(&sha256(&token)));
        assert!(!sessions.remove(&sha256(&token)));
        assert_eq!(sessions.get(&token, 1_000), Lookup::Unknown);
        assert!(sessions.is_empty());
    }

    #[test]
    fn the_number_of_sessions_is_bounded() {
        let sessions = Sessions::new(60);
        let (first, _) = sessions.create("u", "h", 0);
        for i in 1..MAX_SESSIONS {
            sessions.create("u", "h", i as i64);
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        // Full and nothing expired: the one closest to expiry goes.
        let (last, _) = sessions.create("u", "h", 10);
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert_eq!(sessions.get(&first, 10), Lookup::Unknown);
        assert!(matches!(sessions.get(&last, 10), Lookup::Valid(_)));
        // Full with expired ones: they all go.
        sessions.create("u", "h", 20_000);
        assert_eq!(sessions.len(), 1);
    }
}
