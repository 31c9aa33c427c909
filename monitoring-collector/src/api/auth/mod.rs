//! Who may call the REST API: users who log in, API tokens, and the roles they hold.
//!
//! - [`users_file`]: the users file (`[api.auth] users_file`): its format, parsing
//!   and atomic writing;
//! - [`admin`]: what the `user` and `api-token` commands do to that file;
//! - [`reload`]: the server's view of the file, re-read within ~2 s of a change;
//! - [`password`]: argon2id hashing and the bounded pool that verifies passwords;
//! - [`secret`]: random API and session tokens and their SHA-256 digests;
//! - [`sessions`]: login sessions, kept in memory;
//! - [`guard`]: the middleware that authenticates a request and checks its role;
//! - [`handlers`]: `login`, `logout`, `whoami` and `users`.
//!
//! Sessions live in the memory of one collector: they do not survive a restart and
//! are not shared between collectors behind a load balancer (log in again, or use an
//! API token, which every collector reading the same users file accepts).

pub mod admin;
pub mod guard;
pub(crate) mod handlers;
pub mod password;
pub mod reload;
pub mod secret;
pub mod sessions;
pub mod users_file;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use monitoring_common::config::Problem;
use serde::{Deserialize, Serialize};

use self::password::PasswordPool;
use self::reload::Accounts;
use self::sessions::Sessions;

pub use self::guard::{Principal, PrincipalKind};

/// Shortest `session_ttl_secs` accepted.
const MIN_SESSION_TTL_SECS: u64 = 60;
/// Longest `session_ttl_secs` accepted: 30 days.
const MAX_SESSION_TTL_SECS: u64 = 30 * 86_400;

/// `[api.auth]`: who may call the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiAuthConfig {
    /// Whether the read endpoints answer without credentials (the `admin` endpoints
    /// still need an admin). Default `false`. A warning is logged at start when this
    /// is on and the API listens on a non-loopback address.
    pub open_read: bool,
    /// Users (name, role, argon2id password hash) and API tokens (name, role,
    /// SHA-256 of the token, expiry), written by `monitoring-collector user ...` and
    /// `api-token ...`; re-read within ~2 s of a change. Relative paths are relative
    /// to the working directory. A missing file means no users. Default
    /// `"var/collector/users.toml"`.
    pub users_file: PathBuf,
    /// Lifetime of a login session, in seconds, between 60 and 2592000 (30 days).
    /// Default 43200 (12 h).
    pub session_ttl_secs: u64,
}

impl Default for ApiAuthConfig {
    fn default() -> Self {
        ApiAuthConfig {
            open_read: false,
            users_file: PathBuf::from("var/collector/users.toml"),
            session_ttl_secs: 43_200,
        }
    }
}

impl ApiAuthConfig {
    /// Problems with this section; keys are prefixed with `prefix` (e.g. `api.auth`).
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.users_file.as_os_str().is_empty() {
            problems.push(Problem::new(
                format!("{prefix}.users_file"),
                "must not be empty",
            ));
        }
        if !(MIN_SESSION_TTL_SECS..=MAX_SESSION_TTL_SECS).contains(&self.session_ttl_secs) {
            problems.push(Problem::new(
                format!("{prefix}.session_ttl_secs"),
                "must be between 60 and 2592000 (30 days)",
            ));
        }
        problems
    }
}

/// What a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every `GET` data endpoint.
    Read,
    /// Everything, including the user list.
    Admin,
}

impl Role {
    /// Whether this role may call an endpoint that needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }

    /// `read` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "read" => Ok(Role::Read),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}; expected read or admin")),
        }
    }
}

/// The API's authentication state, shared by the guard and the handlers.
pub struct ApiAuth {
    /// Users and tokens from the users file.
    pub accounts: Accounts,
    /// Login sessions.
    pub sessions: Sessions,
    /// Where password verifications run.
    pub passwords: PasswordPool,
    /// `[api.auth] open_read`.
    pub open_read: bool,
    /// Whether the session cookie gets `Secure` (the API serves TLS).
    pub secure_cookie: bool,
}

impl ApiAuth {
    /// The state for `config`; reads the users file once now. `tls` says whether the
    /// API serves HTTPS.
    pub fn new(config: &ApiAuthConfig, tls: bool) -> Arc<ApiAuth> {
        Arc::new(ApiAuth {
            accounts: Accounts::open(&config.users_file),
            sessions: Sessions::new(config.session_ttl_secs),
            passwords: PasswordPool::new(),
            open_read: config.open_read,
            secure_cookie: tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_allows_everything_and_read_only_reads() {
        assert!(Role::Admin.allows(Role::Admin));
        assert!(Role::Admin.allows(Role::Read));
        assert!(Role::Read.allows(Role::Read));
        assert!(!Role::Read.allows(Role::Admin));
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
        assert_eq!(Role::Read.to_string(), "read");
    }

    #[test]
    fn validation_bounds_the_session_lifetime() {
        assert!(ApiAuthConfig::default().validate("api.auth").is_empty());
        let config = ApiAuthConfig {
            session_ttl_secs: 10,
            users_file: PathBuf::new(),
            ..ApiAuthConfig::default()
        };
        let keys: Vec<String> = config
            .validate("api.auth")
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["api.auth.users_file", "api.auth.session_ttl_secs"]);
    }
}
