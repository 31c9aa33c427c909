//! The per-agent rate limit (`[server.rate_limit]`): token buckets for events and
//! uncompressed bytes per second.
//!
//! A bucket holds `rate × burst_secs` tokens and starts full. A batch may be taken
//! when the bucket holds its cost, or, for a batch costing more than the whole bucket,
//! when the bucket is full: such a batch could otherwise never pass, so it is let
//! through and the bucket goes into debt, which later batches wait out. Over time an
//! agent therefore gets its rate, and at most one burst (or one oversize batch) above.
//! A refused batch is not charged; the caller is told how long until it would pass.

use std::time::{Duration, Instant};

use monitoring_common::config::Problem;
use serde::Deserialize;

/// `[server.rate_limit]`: how much one agent (all its connections together) may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Events per second, counted from each frame header's event count; `0` is
    /// unlimited. Default 1,000,000.
    pub events_per_sec: u64,
    /// Uncompressed bytes per second, as declared in each frame header; `0` is
    /// unlimited. Default 268,435,456 (256 MiB).
    pub bytes_per_sec: u64,
    /// Seconds of rate an idle agent may send at once (the bucket size). Default 2.
    pub burst_secs: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            events_per_sec: 1_000_000,
            bytes_per_sec: 256 << 20,
            burst_secs: 2,
        }
    }
}

impl RateLimitConfig {
    /// Problems with this section; keys are prefixed with `prefix`
    /// (e.g. `server.rate_limit`).
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !(1..=3600).contains(&self.burst_secs) {
            problems.push(Problem::new(
                format!("{prefix}.burst_secs"),
                "must be between 1 and 3600",
            ));
        }
        problems
    }

    /// Whether neither events nor bytes are limited.
    pub fn is_unlimited(&self) -> bool {
        self.events_per_sec == 0 && self.bytes_per_sec == 0
    }
}

/// One token bucket. Levels are `f64`: exact for any realistic count and free of
/// rounding drift at high rates.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: f64,
    /// Most tokens held.
    capacity: f64,
    /// Tokens held now; negative while in debt.
    level: f64,
    /// When `level` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate_per_sec × burst` tokens; `None` when `rate_per_sec` is 0
    /// (unlimited).
    pub fn new(rate_per_sec: u64, burst: Duration, now: Instant) -> Option<TokenBucket> {
        if rate_per_sec == 0 {
            return None;
        }
        let rate = rate_per_sec as f64;
        // At least one token, so that a batch of one always fits a full bucket.
        let capacity = (rate * burst.as_secs_f64()).max(1.0);
        Some(TokenBucket {
            rate,
            capacity,
            level: capacity,
            updated: now,
        })
    }

    /// Tokens held now (negative in debt).
    pub fn level(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.level
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + elapsed * self.rate).min(self.capacity);
        // A clock that went backwards (a caller's stale `now`) must not stall refill.
        self.updated = self.updated.max(now);
    }

    /// How long until `cost` may be taken; zero if it may be taken now.
    fn wait(&mut self, cost: f64, now: Instant) -> Duration {
        self.refill(now);
        let needed = cost.min(self.capacity);
        if self.level >= needed {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((needed - self.level) / self.rate)
    }

    fn take(&mut self, cost: f64) {
        self.level -= cost;
    }
}

/// An agent's budget: an event bucket and a byte bucket, each optional.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    events: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

impl RateLimiter {
    /// Full buckets for `config`.
    pub fn new(config: &RateLimitConfig, now: Instant) -> RateLimiter {
        let burst = Duration::from_secs(config.burst_secs);
        RateLimiter {
            events: TokenBucket::new(config.events_per_sec, burst, now),
            bytes: TokenBucket::new(config.bytes_per_sec, burst, now),
        }
    }

    /// Charges a batch of `events` events and `bytes` uncompressed bytes if both
    /// buckets allow it; otherwise charges nothing and returns how long until they
    /// would.
    pub fn try_charge(&mut self, events: u64, bytes: u64, now: Instant) -> Result<(), Duration> {
        let (events, bytes) = (events as f64, bytes as f64);
        let wait_events = self
            .events
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait(events, now));
        let wait_bytes = self
            .bytes
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait(bytes, now));
        let wait = wait_events.max(wait_bytes);
        if !wait.is_zero() {
            return Err(wait);
        }
        if let Some(b) = &mut self.events {
            b.take(events);
        }
        if let Some(b) = &mut self.bytes {
            b.take(bytes);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Waits are computed in floating point: equal to within a microsecond.
    #[track_caller]
    fn assert_close(actual: Duration, expected: Duration) {
        let diff = actual.abs_diff(expected);
        assert!(
            diff < Duration::from_micros(1),
            "{actual:?} != {expected:?}"
        );
    }

    #[test]
    fn a_full_bucket_gives_the_burst_then_refills_at_the_rate() {
        let t0 = Instant::now();
        // 100 tokens/s, 2 s burst: 200 tokens.
        let mut b = TokenBucket::new(100, 2 * SEC, t0).unwrap();
        assert_eq!(b.level(t0), 200.0);
        assert_close(b.wait(150.0, t0), Duration::ZERO);
        b.take(150.0);
        // 50 left: 100 more need 0.5 s.
        assert_close(b.wait(100.0, t0), ms(500));
        assert_close(b.wait(100.0, t0 + ms(250)), ms(250));
        assert_close(b.wait(100.0, t0 + ms(500)), Duration::ZERO);
        assert_eq!(b.level(t0 + ms(500)), 100.0);
    }

    #[test]
    fn refill_stops_at_the_burst_cap() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, SEC, t0).unwrap();
        b.take(100.0);
        // An hour idle refills one burst, not 360,000 tokens.
        assert_eq!(b.level(t0 + 3600 * SEC), 100.0);
        // A batch of the whole bucket passes; one more token must wait for refill.
        let later = t0 + 3600 * SEC;
        assert_close(b.wait(100.0, later), Duration::ZERO);
        b.take(100.0);
        assert_close(b.wait(1.0, later), ms(10));
    }

    #[test]
    fn a_batch_larger_than_the_bucket_passes_when_full_and_leaves_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, SEC, t0).unwrap();
        // Three buckets' worth at once: it could never pass if it had to fit.
        assert_close(b.wait(300.0, t0), Duration::ZERO);
        b.take(300.0);
        assert_eq!(b.level(t0), -200.0);
        // The debt is paid back before anything else passes: 2 s of debt plus 0.1 s
        // for a batch of 10.
        assert_close(b.wait(10.0, t0), ms(2100));
        // Another oversize batch must wait for a full bucket again (3 s).
        assert_close(b.wait(1000.0, t0), 3 * SEC);
        assert_close(b.wait(1000.0, t0 + 3 * SEC), Duration::ZERO);
        // A partly refilled bucket does not let an oversize batch through.
        let mut c = TokenBucket::new(100, SEC, t0).unwrap();
        c.take(1.0);
        assert_close(c.wait(500.0, t0), ms(10));
    }

    #[test]
    fn zero_is_unlimited() {
        let t0 = Instant::now();
        assert!(TokenBucket::new(0, SEC, t0).is_none());
        let config = RateLimitConfig {
            events_per_sec: 0,
            bytes_per_sec: 0,
            burst_secs: 1,
        };
        assert!(config.is_unlimited());
        let mut limiter = RateLimiter::new(&config, t0);
        for _ in 0..1000 {
            assert_eq!(limiter.try_charge(u64::MAX, u64::MAX, t0), Ok(()));
        }
    }

    #[test]
    fn both_budgets_must_allow_a_batch_and_a_refusal_charges_nothing() {
        let t0 = Instant::now();
        let config = RateLimitConfig {
            events_per_sec: 100,
            bytes_per_sec: 1000,
            burst_secs: 1,
        };
        let mut limiter = RateLimiter::new(&config, t0);
        assert_eq!(limiter.try_charge(60, 100, t0), Ok(()));
        // Events would fit again only after 0.2 s; bytes are fine.
        assert_close(limiter.try_charge(60, 100, t0).unwrap_err(), ms(200));
        // Bytes are the limit here: 900 left, 1000 needed: 0.1 s.
        assert_close(limiter.try_charge(1, 1000, t0).unwrap_err(), ms(100));
        // Nothing was charged by the refusals.
        assert_eq!(limiter.try_charge(40, 900, t0), Ok(()));
        assert_close(limiter.try_charge(1, 1, t0).unwrap_err(), ms(10));
        // Only events limited: bytes do not count.
        let events_only = RateLimitConfig {
            bytes_per_sec: 0,
            ..config
        };
        let mut limiter = RateLimiter::new(&events_only, t0);
        assert_eq!(limiter.try_charge(100, u64::MAX, t0), Ok(()));
    }

    #[test]
    fn defaults_and_validation() {
        let config = RateLimitConfig::default();
        assert_eq!(config.events_per_sec, 1_000_000);
        assert_eq!(config.bytes_per_sec, 268_435_456);
        assert_eq!(config.burst_secs, 2);
        assert!(config.validate("server.rate_limit").is_empty());
        let bad = RateLimitConfig {
            burst_secs: 0,
            ..config
        };
        let keys: Vec<String> = bad
            .validate("server.rate_limit")
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["server.rate_limit.burst_secs"]);
    }
}
