//! Exponential backoff for waiting out an unavailable Cassandra.

use std::time::{Duration, Instant};

use tracing::warn;

use crate::error::Result;

/// Delays doubling from `first` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// 200 ms, doubling up to 5 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }
}

impl Backoff {
    /// Delays starting at `first`, never longer than `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { first, next: first.min(max), max }
    }

    /// The delay to wait now; the following one is twice as long (capped).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }
}

/// Runs `operation` until it succeeds, waiting with backoff after each
/// transient failure (logged with its reason), for at most `patience`
/// (forever when `None`). A non-transient error is returned at once.
pub async fn retry_transient<T, F, Fut>(patience: Option<Duration>, mut operation: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut backoff = Backoff::default();
    loop {
        match operation().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_transient() => {
                let delay = backoff.next_delay();
                if patience.is_some_and(|limit| started.elapsed() + delay > limit) {
                    return Err(error);
                }
                warn!("Cassandra unavailable ({error}); retrying in {delay:.1?}");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }
}
