//! Whether delivery is waiting for work: the transport is connected and every batch
//! it sent has been acknowledged.
//!
//! The batcher sends a part-filled batch at once when it is (Nagle's rule): at low
//! rates each line goes out as soon as it is read instead of waiting out
//! `flush_interval_ms`, and under load batches still fill up, because something is
//! always in flight. The transport sets the flag; the batcher clears it when it hands
//! over a batch, so that the next one waits for that one's acknowledgement.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// The shared flag, with a wakeup for the moment it turns true.
#[derive(Debug, Default)]
pub struct DeliveryIdle {
    idle: AtomicBool,
    turned_idle: Notify,
}

impl DeliveryIdle {
    /// Sets the flag; waiters wake when it turns true.
    pub fn set(&self, idle: bool) {
        let was = self.idle.swap(idle, Ordering::AcqRel);
        if idle && !was {
            self.turned_idle.notify_waiters();
        }
    }

    /// Whether delivery is idle now.
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Acquire)
    }

    /// Returns once delivery is idle (at once if it is).
    pub async fn wait(&self) {
        loop {
            // Register before checking, so a wakeup between the two is not lost.
            let mut notified = pin!(self.turned_idle.notified());
            notified.as_mut().enable();
            if self.is_idle() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_when_delivery_turns_idle() {
        let idle = Arc::new(DeliveryIdle::default());
        assert!(!idle.is_idle());
        let waiter = tokio::spawn({
            let idle = idle.clone();
            async move { idle.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        idle.set(true);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
        // Already idle: no wait at all.
        tokio::time::timeout(Duration::from_millis(100), idle.wait())
            .await
            .expect("at once");
    }
}
