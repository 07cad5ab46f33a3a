//! What every writer of the lake does when another writer committed first:
//! recognise the conflict, back off with jitter, reload and try again (as
//! delta-rs keeps its conflict checker apart from its operations). Used by
//! the raw MERGEs, live ingest, compaction and the sessions stage.

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

/// How long to wait before the `retry`-th attempt after a lost commit race:
/// a random share of an exponentially growing bound (20 ms doubling, at most
/// 1 s). Without it, two writers that commit at the same pace (two API
/// processes on one lake) kept colliding until their retries ran out — found
/// by the torture suite.
fn conflict_backoff(retry: u32) -> std::time::Duration {
    let bound_ms = (20u64 << retry.min(6)).min(1_000);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let jitter = u64::from(nanos ^ std::process::id().rotate_left(16)) % (bound_ms + 1);
    std::time::Duration::from_millis(jitter.max(bound_ms / 4))
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
