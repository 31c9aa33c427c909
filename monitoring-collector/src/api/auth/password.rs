//! Passwords: argon2id hashes in PHC form, the rules a new password must meet, and the
//! small pool that verifies them.
//!
//! Verifying costs tens of milliseconds of CPU and ~19 MiB of memory on purpose, so
//! verifications run on the blocking pool, at most [`MAX_CONCURRENT`] at a time, and
//! at most [`MAX_IN_FLIGHT`] logins wait for their turn: past that a login is refused
//! at once as busy instead of queueing without bound. A login for a name that does
//! not exist is verified against [`DUMMY_HASH`], so that it takes as long as a wrong
//! password and its timing does not tell which names exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::{ARGON2ID_IDENT, Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use rand::distr::{Alphanumeric, SampleString};
use tokio::sync::Semaphore;

/// Password verifications running at once.
pub const MAX_CONCURRENT: usize = 2;
/// Logins running or waiting for a verification; more are refused as busy.
pub const MAX_IN_FLIGHT: usize = 64;
/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in bytes (hashing cost grows with the length).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Length of generated passwords, in characters (about 143 bits).
pub const GENERATED_PASSWORD_CHARS: usize = 24;

/// The hash of a random password nobody knows, with the default parameters that
/// [`hash_password`] uses, so that verifying against it costs the same.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$5oEsKuUEuh9C6Ce10We+wA$1npsA0GGw9HAifkgPKAvttKKzh9vcmBH6M3WptcCEA4";

/// Why a password could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Under [`MIN_PASSWORD_CHARS`].
    #[error("the password is {0} characters long; at least 12 are required")]
    TooShort(usize),
    /// Over [`MAX_PASSWORD_BYTES`].
    #[error("the password is {0} bytes long; at most 1024 are allowed")]
    TooLong(usize),
    /// The hasher failed (should not happen with the default parameters).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Checks that `password` may be set.
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort(chars));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong(password.len()));
    }
    Ok(())
}

/// A random password of [`GENERATED_PASSWORD_CHARS`] letters and digits.
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), GENERATED_PASSWORD_CHARS)
}

/// The argon2id PHC string of `password`, with a random salt and the default
/// parameters (19 MiB, 2 passes, 1 lane: the OWASP recommendation).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt: [u8; 16] = rand::random();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `phc` is an argon2id PHC string.
pub fn is_argon2id_phc(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| hash.algorithm == ARGON2ID_IDENT && hash.hash.is_some())
}

/// Whether `password` matches the PHC string `phc` (false if `phc` is malformed).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Why a verification did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// [`MAX_IN_FLIGHT`] logins are already running or waiting.
    #[error("too many logins in progress; retry later")]
    Busy,
    /// The blocking task failed.
    #[error("password verification failed: {0}")]
    Internal(String),
}

/// Runs verifications on the blocking pool, [`MAX_CONCURRENT`] at a time.
#[derive(Debug)]
pub struct PasswordPool {
    permits: Arc<Semaphore>,
    in_flight: AtomicUsize,
}

impl Default for PasswordPool {
    fn default() -> Self {
        PasswordPool::new()
    }
}

/// Counts a login in flight until dropped (also when the client goes away).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordPool {
    /// An idle pool.
    pub fn new() -> PasswordPool {
        PasswordPool {
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Whether `password` matches `phc`; with `None` (no such user) it is verified
    /// against [`DUMMY_HASH`] and the answer is `false`.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, VerifyError> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let _in_flight = InFlight(&self.in_flight);
        if before >= MAX_IN_FLIGHT {
            return Err(VerifyError::Busy);
        }
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| VerifyError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            // Held until the hash is done, even if the request was dropped meanwhile.
            let _permit = permit;
            match phc {
                Some(phc) => verify_password(&password, &phc),
                None => {
                    // black_box: the answer is ignored, the cost must not be.
                    std::hint::black_box(verify_password(&password, DUMMY_HASH));
                    false
                }
            }
        })
        .await
        .map_err(|e| VerifyError::Internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(is_argon2id_phc(&hash));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterz", &hash));
        assert_ne!(hash, hash_password("correct horse battery").unwrap());
        assert!(!verify_password("x", "not a hash"));
        assert!(!is_argon2id_phc(
            "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"
        ));
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_costs() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real_hash = hash_password("some password here").unwrap();
        let real = PasswordHash::new(&real_hash).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
    }

    #[test]
    fn new_passwords_have_a_minimum_length() {
        assert_eq!(
            check_new_password("short pass1"),
            Err(PasswordError::TooShort(11))
        );
        assert!(check_new_password("twelve chars").is_ok());
        assert_eq!(
            check_new_password("éééééééééééé"),
            Ok(()),
            "characters, not bytes"
        );
        assert_eq!(
            check_new_password(&"a".repeat(1025)),
            Err(PasswordError::TooLong(1025))
        );
        let generated = generate_password();
        assert_eq!(generated.len(), GENERATED_PASSWORD_CHARS);
        assert!(generated.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(check_new_password(&generated).is_ok());
        assert_ne!(generated, generate_password());
    }

    #[tokio::test]
    async fn the_pool_verifies_and_answers_false_for_unknown_users() {
        let pool = PasswordPool::new();
        let hash = hash_password("the right password").unwrap();
        assert_eq!(
            pool.verify("the right password".into(), Some(hash.clone()))
                .await,
            Ok(true)
        );
        assert_eq!(
            pool.verify("the wrong password".into(), Some(hash)).await,
            Ok(false)
        );
        assert_eq!(pool.verify("anything".into(), None).await, Ok(false));
        assert_eq!(pool.in_flight.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn the_pool_refuses_past_its_bound() {
        let pool = PasswordPool::new();
        pool.in_flight.store(MAX_IN_FLIGHT, Ordering::Release);
        assert_eq!(
            pool.verify("anything".into(), None).await,
            Err(VerifyError::Busy)
        );
        assert_eq!(pool.in_flight.load(Ordering::Acquire), MAX_IN_FLIGHT);
    }
}
