//! The one retry-with-backoff helper every adapter and the card updater use.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Doubling waits between retries, from `first` up to `most`; `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    most: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, most: Duration) -> Backoff {
        Backoff { first, most, next: first }
    }

    /// The wait before the next try; the one after it is twice as long (at most `most`).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.most);
        wait
    }

    /// Starts again from `first`.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Waits for the next try unless `cancel` fires first; `false` when cancelled.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let wait = self.next_wait();
        sleep_or_cancel(cancel, wait).await
    }
}

/// Sleeps for `d` unless `cancel` fires first; `false` when cancelled.
pub async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(2));
        let waits: Vec<_> = (0..4).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(500));
    }
}
