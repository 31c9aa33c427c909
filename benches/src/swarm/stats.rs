//! What the simulated agents count, shared as atomics (one set for all agents, so
//! that a thousand agents cost a thousand pointers, not a thousand histograms), and
//! the ack latency histogram.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Distinct answer reasons kept; later ones are counted under "other reasons".
const MAX_REASONS: usize = 10;

/// Counters every agent adds to.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connection attempts that failed (refused, timed out, HTTP error).
    pub connect_failures: AtomicU64,
    /// Established connections that ended before the run did.
    pub disconnects: AtomicU64,
    /// Frames written, resends included.
    pub batches_sent: AtomicU64,
    /// Events in them.
    pub events_sent: AtomicU64,
    /// Frames written again (after retry-later or a reconnect).
    pub batches_resent: AtomicU64,
    /// `ok` acknowledgements of batches in flight.
    pub batches_acked: AtomicU64,
    /// Events in them.
    pub events_acked: AtomicU64,
    /// `retry-later` answers.
    pub retry_later: AtomicU64,
    /// `rejected` answers.
    pub batches_rejected: AtomicU64,
    /// Events in them.
    pub events_rejected: AtomicU64,
    /// Acknowledgements that matched no batch in flight, or did not decode.
    pub unexpected_acks: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// See [`Counters::connect_failures`].
    pub connect_failures: u64,
    /// See [`Counters::disconnects`].
    pub disconnects: u64,
    /// See [`Counters::batches_sent`].
    pub batches_sent: u64,
    /// See [`Counters::events_sent`].
    pub events_sent: u64,
    /// See [`Counters::batches_resent`].
    pub batches_resent: u64,
    /// See [`Counters::batches_acked`].
    pub batches_acked: u64,
    /// See [`Counters::events_acked`].
    pub events_acked: u64,
    /// See [`Counters::retry_later`].
    pub retry_later: u64,
    /// See [`Counters::batches_rejected`].
    pub batches_rejected: u64,
    /// See [`Counters::events_rejected`].
    pub events_rejected: u64,
    /// See [`Counters::unexpected_acks`].
    pub unexpected_acks: u64,
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The values now.
    pub fn snapshot(&self) -> CounterValues {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterValues {
            connect_failures: v(&self.connect_failures),
            disconnects: v(&self.disconnects),
            batches_sent: v(&self.batches_sent),
            events_sent: v(&self.events_sent),
            batches_resent: v(&self.batches_resent),
            batches_acked: v(&self.batches_acked),
            events_acked: v(&self.events_acked),
            retry_later: v(&self.retry_later),
            batches_rejected: v(&self.batches_rejected),
            events_rejected: v(&self.events_rejected),
            unexpected_acks: v(&self.unexpected_acks),
        }
    }
}

/// The reasons given with retry-later and rejected answers, counted.
#[derive(Debug, Default)]
pub struct Reasons(Mutex<BTreeMap<String, u64>>);

impl Reasons {
    /// Counts one answer of `status` ("retry-later", "rejected") with `reason`.
    pub fn add(&self, status: &str, reason: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = format!("{status}: {reason}");
        if map.len() >= MAX_REASONS && !map.contains_key(&key) {
            *map.entry(format!("{status}: other reasons")).or_default() += 1;
        } else {
            *map.entry(key).or_default() += 1;
        }
    }

    /// Every reason and its count, most frequent first.
    pub fn counts(&self) -> Vec<(String, u64)> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<(String, u64)> = map.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.1));
        v
    }
}

/// Sub-buckets per power of two: values are kept to within 1/32 (about 3%).
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two of microseconds covered: up to 2^40 µs, far past any run.
const POWERS: usize = 40;

/// A log-linear histogram of microseconds, safe to record into from every task.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..SUB * (POWERS + 1)).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        let i = bucket_of(us).min(self.buckets.len() - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        // The rank of the quantile, 1-based: p99 of 100 values is the 99th.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                let bound = upper_bound_of(i).min(self.max_us.load(Ordering::Relaxed));
                return Duration::from_micros(bound);
            }
        }
        self.max()
    }

    /// The largest value recorded.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us.load(Ordering::Relaxed))
    }
}

/// Values below `SUB` have a bucket each; above, each power of two is cut into
/// `SUB` equal parts.
fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let power = 63 - us.leading_zeros(); // >= SUB_BITS
    let sub = (us >> (power - SUB_BITS)) as usize & (SUB - 1);
    (power - SUB_BITS + 1) as usize * SUB + sub
}

/// The largest value of bucket `i`.
fn upper_bound_of(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let power = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64;
    let width = 1u64 << (power - SUB_BITS);
    (1u64 << power) + (sub + 1) * width - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for us in [0u64, 1, 31, 32, 33, 63, 64, 100, 1_000, 12_345, 1 << 30] {
            let i = bucket_of(us);
            assert!(upper_bound_of(i) >= us, "{us} in bucket {i}");
            assert!(
                upper_bound_of(i) <= us + us / 32 + 1,
                "{us}: bound {}",
                upper_bound_of(i)
            );
            if i > 0 {
                assert!(upper_bound_of(i - 1) < us, "{us}: previous bucket");
            }
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).as_micros();
        let p99 = h.quantile(0.99).as_micros();
        assert!((50_000..=51_600).contains(&p50), "{p50}");
        assert!((99_000..=100_000).contains(&p99), "{p99}");
        assert_eq!(h.max(), Duration::from_millis(100));
        assert_eq!(h.count(), 100);
    }
}
