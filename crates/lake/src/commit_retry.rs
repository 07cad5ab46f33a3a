//! What every writer of the lake does when another writer committed first:
//! recognise the conflict, back off with jitter, reload and try again (as
//! delta-rs keeps its conflict checker apart from its operations). Used by
//! the raw MERGEs, live ingest, compaction and the sessions stage.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use deltalake::DeltaTableError;
use deltalake::kernel::transaction::TransactionError;
use tracing::warn;

/// What every commit-retry loop does after a failed attempt: when `error`
/// is a commit conflict and fewer than `max` retries were made, counts one
/// more in `retried`, logs it and waits [`conflict_backoff`], so the caller
/// reloads and tries again; any other error, or one retry too many, is
/// given back.
pub(crate) async fn back_off_after_conflict(
    error: DeltaTableError,
    retried: &mut u32,
    max: u32,
    what: &str,
) -> std::result::Result<(), DeltaTableError> {
    if !is_commit_conflict(&error) || *retried >= max {
        return Err(error);
    }
    *retried += 1;
    let pause = conflict_backoff(*retried);
    warn!(retry = *retried, reason = %error, "{what} lost a commit race; trying again in {pause:?}");
    tokio::time::sleep(pause).await;
    Ok(())
}

/// After a lost commit race: 20 ms doubling up to 500 ms, each delay
/// stretched by a random share of itself (backon's jitter, a seeded-at-random
/// fastrand generator), so the waits lie in [20, 40) ms, [40, 80) ms, … and
/// from the sixth retry on in [0.5, 1) s. Without jitter, two writers that
/// commit at the same pace (two API processes on one lake) kept colliding
/// until their retries ran out — found by the torture suite. The number of
/// retries is each caller's.
const CONFLICT: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(20))
    .with_max_delay(Duration::from_millis(500))
    .with_jitter()
    .without_max_times();

/// How long to wait before the `retry`-th attempt (from 1) after a lost
/// commit race: the `retry`-th delay of [`CONFLICT`].
fn conflict_backoff(retry: u32) -> Duration {
    let index = usize::try_from(retry.max(1) - 1).unwrap_or(usize::MAX);
    CONFLICT.build().nth(index).unwrap_or(Duration::from_secs(1))
}

/// Whether `error` means another writer committed first in a way this
/// operation must see: reloading and running it again can succeed.
pub(crate) fn is_commit_conflict(error: &DeltaTableError) -> bool {
    matches!(
        error,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_)
            }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_waits_double_with_jitter_up_to_a_second() {
        for (retry, low_ms, high_ms) in [(1, 20, 40), (2, 40, 80), (5, 320, 640), (6, 500, 1000), (40, 500, 1000)] {
            for _ in 0..50 {
                let pause = conflict_backoff(retry);
                let range = Duration::from_millis(low_ms)..Duration::from_millis(high_ms);
                assert!(range.contains(&pause), "retry {retry}: {pause:?} outside {range:?}");
            }
        }
    }
}
