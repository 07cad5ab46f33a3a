//! Waiting out an unavailable Cassandra: one named backoff policy (backon)
//! for every caller (connecting, the schema, the serve writer, the API's
//! background connection).

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use tracing::warn;

use crate::error::Result;

/// While Cassandra is unavailable: 200 ms doubling up to 5 s, with no limit
/// on the number of retries (the caller's patience, if any, bounds them).
/// No jitter: each process has one writer and one reader connection that
/// wait, so there is no herd to spread.
pub const UNAVAILABLE: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(200))
    .with_max_delay(Duration::from_secs(5))
    .without_max_times();

/// The delays of [`UNAVAILABLE`] for a loop that retries by itself (the serve
/// writer retries a group of requests together): endless; take new ones
/// after a success to start over from the first delay.
pub fn unavailable_delays() -> impl Iterator<Item = Duration> + Send + Sync {
    UNAVAILABLE.build()
}

/// Runs `operation` until it succeeds, waiting [`UNAVAILABLE`] after each
/// transient failure (logged with its reason), for at most `patience`
/// (forever when `None`). A non-transient error is returned at once.
pub async fn retry_transient<T, F, Fut>(patience: Option<Duration>, operation: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let within_patience = move |delay: &Duration| patience.is_none_or(|limit| started.elapsed() + *delay <= limit);
    operation
        .retry(UNAVAILABLE)
        .when(|error| error.is_transient())
        .adjust(move |_, delay| delay.filter(within_patience))
        .notify(|error, delay| warn!("Cassandra unavailable ({error}); retrying in {delay:.1?}"))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_doubles_up_to_the_cap_without_end() {
        let delays: Vec<u128> = unavailable_delays().take(8).map(|delay| delay.as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert!(unavailable_delays().nth(10_000).is_some());
    }
}
