//! The queue under the ring buffer: lock-free, bounded, and holding memory only for
//! what it holds.
//!
//! `crossbeam_queue::ArrayQueue` initialises all its slots when created: 2 MiB for
//! the default 10,000 events, all of it resident in an idle agent (BENCHMARKS.md,
//! idle agent). A `SegQueue` takes blocks of 31 slots as it fills and frees them as
//! they are drained; an atomic count of reserved slots bounds it. A producer reserves
//! a slot before pushing and the consumer releases it after popping, so the count is
//! never below the number of events in the queue nor above the capacity.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_queue::SegQueue;

/// A bounded multi-producer queue.
pub(super) struct Bounded<T> {
    queue: SegQueue<T>,
    reserved: AtomicUsize,
    capacity: usize,
}

impl<T> Bounded<T> {
    /// A queue of `capacity` slots (at least 1).
    pub(super) fn new(capacity: usize) -> Bounded<T> {
        Bounded {
            queue: SegQueue::new(),
            reserved: AtomicUsize::new(0),
            capacity: capacity.max(1),
        }
    }

    fn reserve(&self) -> bool {
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Pushes `value`, or gives it back when the queue is full.
    pub(super) fn push(&self, value: T) -> Result<(), T> {
        if self.reserve() {
            self.queue.push(value);
            Ok(())
        } else {
            Err(value)
        }
    }

    /// Pushes `value`, evicting the oldest events while the queue is full; each
    /// evicted one goes to `evicted` (usually one; more when other producers take
    /// the room made).
    pub(super) fn force_push(&self, mut value: T, mut evicted: impl FnMut(T)) {
        loop {
            match self.push(value) {
                Ok(()) => return,
                Err(back) => value = back,
            }
            if let Some(old) = self.pop() {
                evicted(old);
            }
        }
    }

    /// Takes the oldest event.
    pub(super) fn pop(&self) -> Option<T> {
        let value = self.queue.pop()?;
        self.reserved.fetch_sub(1, Ordering::AcqRel);
        Some(value)
    }

    /// Events held or being pushed.
    pub(super) fn len(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// Whether no event is held.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The bound.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn holds_at_most_its_capacity_in_order() {
        let q = Bounded::new(3);
        for i in 0..3 {
            q.push(i).unwrap();
        }
        assert_eq!(q.push(3), Err(3));
        assert_eq!((q.len(), q.capacity()), (3, 3));
        let mut evicted = Vec::new();
        q.force_push(3, |old| evicted.push(old));
        assert_eq!(evicted, [0]);
        let drained: Vec<i32> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(drained, [1, 2, 3]);
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn concurrent_producers_never_pass_the_bound_and_lose_nothing() {
        let q = Arc::new(Bounded::new(100));
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let mut evicted = 0usize;
                    for i in 0..10_000 {
                        q.force_push(p * 10_000 + i, |_| evicted += 1);
                        assert!(q.len() <= 100);
                    }
                    evicted
                })
            })
            .collect();
        let mut popped = 0usize;
        while producers.iter().any(|p| !p.is_finished()) {
            popped += usize::from(q.pop().is_some());
        }
        let evicted: usize = producers.into_iter().map(|p| p.join().unwrap()).sum();
        popped += std::iter::from_fn(|| q.pop()).count();
        // Every event pushed was either taken by the consumer or evicted, once.
        assert_eq!(popped + evicted, 40_000);
        assert_eq!(q.len(), 0);
    }
}
