//! A small pool of PostgreSQL connections, shared by commits and queries.
//!
//! At most `size` connections are open; a caller waits up to the timeout for one to
//! come free. A connection that fails in a way that leaves it unusable (closed,
//! reset, its backend terminated, the server shutting down) is discarded rather
//! than returned, and so are the idle ones beside it, which a server restart has
//! broken too; the failed call is then run once more on a new connection, so a
//! restart of PostgreSQL costs the callers that hit it one retry (or, while the
//! server is down, an error that the collector answers with retry-later), never a
//! restart of the collector. Running a call twice is safe for every call the store
//! makes: a commit that did land before the connection broke is found as a
//! duplicate the second time.
//!
//! Each connection keeps its prepared statements, so repeated statements are
//! parsed once per connection.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use postgres::{Client, Statement};

use super::error::{PgError, is_broken};
use super::tls::PgTls;

/// Prepared statements kept per connection; the cache is cleared when full (the
/// log search builds a few dozen distinct texts at most).
const STATEMENT_CACHE: usize = 64;

/// One connection and its prepared statements.
pub(crate) struct Conn {
    /// The client.
    pub(crate) client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    /// `sql` prepared on this connection, from the cache when it was prepared before.
    pub(crate) fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

struct State {
    idle: Vec<Conn>,
    /// Connections open, idle or lent out (or being opened).
    open: usize,
}

/// The pool.
pub(crate) struct Pool {
    config: postgres::Config,
    target: String,
    /// TLS, used as the URL's `sslmode` asks.
    tls: PgTls,
    /// Run on every new connection: the session's timeouts and durability.
    session: String,
    size: usize,
    timeout: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is a list and a count, consistent after any panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    /// A pool of at most `size` connections made with `config` and `tls`; `target` names the
    /// server in errors. Opens no connection yet.
    pub(crate) fn new(
        config: postgres::Config,
        target: String,
        tls: PgTls,
        size: usize,
        timeout: Duration,
    ) -> Pool {
        let ms = timeout.as_millis();
        let session = format!(
            "SET statement_timeout = {ms};
             SET lock_timeout = {ms};
             SET synchronous_commit = on;
             SET client_min_messages = warning;
             SET plan_cache_mode = force_custom_plan;"
        );
        Pool {
            config,
            target,
            tls,
            session,
            size: size.max(1),
            timeout,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// The server, as errors name it.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Wraps a client error with the server's name.
    pub(crate) fn error(&self, source: postgres::Error) -> PgError {
        PgError::Db {
            target: self.target.clone(),
            source,
        }
    }

    fn connect(&self) -> Result<Conn, postgres::Error> {
        let mut client = self.config.connect(self.tls.clone())?;
        client.batch_execute(&self.session)?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// Runs `f` with a connection; once more on a new connection if `f` failed
    /// because a reused connection turned out to be broken. Callable from any
    /// thread (see [`off_runtime`]).
    pub(crate) fn run<T: Send>(
        &self,
        f: impl FnMut(&mut Conn) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, PgError> {
        off_runtime(|| self.run_here(f))
    }

    fn run_here<T>(
        &self,
        mut f: impl FnMut(&mut Conn) -> Result<T, postgres::Error>,
    ) -> Result<T, PgError> {
        let mut retried = false;
        loop {
            let mut lease = self.take(retried)?;
            let Some(conn) = lease.conn.as_mut() else {
                // A lease always holds a connection until it is dropped.
                continue;
            };
            match f(conn) {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let broken = is_broken(&error) || conn.client.is_closed();
                    if !broken {
                        return Err(self.error(error));
                    }
                    lease.discard();
                    self.discard_idle();
                    if lease.reused && !retried {
                        tracing::warn!(
                            message = "Lost a PostgreSQL connection; retrying on a new one.",
                            error = %super::error::chain(&error),
                            server = %self.target,
                        );
                        retried = true;
                        continue;
                    }
                    return Err(self.error(error));
                }
            }
        }
    }

    /// Lends a connection: an idle one unless `fresh`, else a new one if fewer than
    /// `size` are open, else the first one returned within the timeout.
    fn take(&self, fresh: bool) -> Result<Lease<'_>, PgError> {
        let deadline = Instant::now() + self.timeout;
        let mut state = lock(&self.state);
        loop {
            if !fresh && let Some(conn) = state.idle.pop() {
                return Ok(Lease {
                    pool: self,
                    conn: Some(conn),
                    reused: true,
                });
            }
            if fresh && let Some(stale) = state.idle.pop() {
                // Opened before the failure that asked for a fresh one: suspect.
                state.open -= 1;
                drop(stale);
                continue;
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(conn) => Ok(Lease {
                        pool: self,
                        conn: Some(conn),
                        reused: false,
                    }),
                    Err(error) => {
                        self.release_slot();
                        Err(self.error(error))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PgError::PoolExhausted {
                    target: self.target.clone(),
                    waited: self.timeout,
                    size: self.size,
                });
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Forgets a connection that was closed or never opened.
    fn release_slot(&self) {
        lock(&self.state).open -= 1;
        self.freed.notify_one();
    }

    /// Closes every idle connection (after one was found broken).
    fn discard_idle(&self) {
        let stale: Vec<Conn> = {
            let mut state = lock(&self.state);
            let stale = std::mem::take(&mut state.idle);
            state.open -= stale.len();
            stale
        };
        if !stale.is_empty() {
            self.freed.notify_all();
        }
        drop(stale);
    }
}

/// Runs `f` where the `postgres` client may block: each client drives its own
/// small runtime, which panics if started inside another one's async context.
/// Callers are meant to be plain threads or `spawn_blocking` (`f` runs as is), but
/// a call from an async task (the store is a trait object; nothing stops one) must
/// block its thread rather than crash the collector: on a multi-threaded runtime
/// the thread leaves the runtime for the call (`block_in_place`); on a
/// current-thread runtime, which cannot, `f` runs on a scoped thread.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

/// A lent connection, returned to the pool when dropped unless discarded.
struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    /// It was idle in the pool (so it may have broken since its last use).
    reused: bool,
}

impl Lease<'_> {
    fn discard(&mut self) {
        if self.conn.take().is_some() {
            self.pool.release_slot();
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if conn.client.is_closed() {
            drop(conn);
            self.pool.release_slot();
            return;
        }
        lock(&self.pool.state).idle.push(conn);
        self.pool.freed.notify_one();
    }
}
