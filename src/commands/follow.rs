//! What the long-running commands share: the stop signal (Ctrl-C or
//! SIGTERM) and the follow loop that runs a stage's pass again and again
//! (`raw --follow`, `sessions --follow`, `serve --follow`, `up`), only when
//! its input has something new.

use std::time::Duration;

use anyhow::Result;
use backon::{BackoffBuilder, ExponentialBuilder};
use sessionlake_lake::Lake;
use sessionlake_lake::schema::TableSpec;
use sessionlake_lake::watch::{LandingWatch, LogWatch};

/// Resolves on Ctrl-C or SIGTERM: every long-running command stops on either.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::mem::drop(interrupt.await),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// How long a pass in flight may go on after the stop signal.
const PASS_GRACE: Duration = Duration::from_secs(30);

/// The follower's backoff policy (backon): the pause after a failed pass
/// is 0.5 s and doubles with each failure in a row, up to 30 s; a good pass
/// starts it over.
const FAILED_PASS: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(500))
    .with_max_delay(Duration::from_secs(30))
    .without_max_times();

/// What tells a follower that its input has something new: a pass opens
/// tables and replays logs, a trigger looks at one name (so an idle `up`
/// costs next to nothing).
pub(crate) enum Trigger {
    /// A new version of a Delta table (the next commit file exists).
    Log(LogWatch),
    /// A newly landed file (the landing manifest's folder changed).
    Landing(LandingWatch),
}

impl Trigger {
    /// New versions of `spec`'s table in `lake`.
    pub(crate) fn log(lake: &Lake, spec: &TableSpec) -> Result<Self> {
        Ok(Self::Log(LogWatch::new(lake, spec)?))
    }

    /// Newly landed files in `lake`.
    pub(crate) fn landing(lake: &Lake) -> Result<Self> {
        Ok(Self::Landing(LandingWatch::new(lake)?))
    }

    /// Whether there is something new since the last call (yes on the
    /// first call, and when the check itself fails: a pass then finds out).
    async fn anything_new(&mut self) -> bool {
        let changed = match self {
            Trigger::Log(watch) => watch.changed().await,
            Trigger::Landing(watch) => watch.changed().await,
        };
        changed.unwrap_or_else(|error| {
            tracing::debug!(%error, "checking for new input failed; running a pass to find out");
            true
        })
    }
}

/// Runs `pass` whenever `trigger` says its input has something new
/// (checked every `poll`), until `stop` resolves; each good outcome goes to
/// `show`, which says whether to go on.
///
/// A failed pass never ends the loop: it is logged (warn, with its cause
/// chain) and retried after [`retry_pause`]. The passes are idempotent
/// (each applies only what its progress marker says is new), so a retry
/// after a commit conflict, an I/O hiccup or a Cassandra timeout simply
/// does the work again. Errors that cannot heal (a bad configuration, a
/// store that rejects the credentials) are the ones a command finds before
/// it starts following, and those still end it.
///
/// A pass in flight when `stop` resolves gets [`PASS_GRACE`] to finish:
/// dropping it would be safe for the data (a Delta commit is atomic and
/// carries its own progress marker; Cassandra rows are idempotent upserts
/// recorded as applied only after they are acknowledged), but it leaves the
/// Delta kernel's detached reads running into the exit, where a cancelled
/// one panicked (found by `.ci/run` on `up`), and finishing keeps the
/// pass's work.
pub(crate) async fn follow<T, Pass>(
    poll: Duration,
    stop: impl Future<Output = ()>,
    mut trigger: Trigger,
    mut pass: impl FnMut() -> Pass,
    mut show: impl FnMut(&T) -> bool,
) where
    Pass: Future<Output = Result<T>>,
{
    let mut stop = std::pin::pin!(stop);
    let mut failed_in_a_row = 0u32;
    loop {
        // After a failed pass the trigger has moved on already: the retry
        // runs whatever it says.
        if failed_in_a_row == 0 && !trigger.anything_new().await {
            tokio::select! {
                _ = tokio::time::sleep(poll) => continue,
                _ = &mut stop => return,
            }
        }
        let mut running = std::pin::pin!(pass());
        let outcome = tokio::select! {
            outcome = &mut running => outcome,
            _ = &mut stop => {
                if tokio::time::timeout(PASS_GRACE, running).await.is_err() {
                    tracing::warn!("the pass in flight did not finish {PASS_GRACE:?} after the stop signal; stopping anyway");
                }
                return;
            }
        };
        let pause = match outcome {
            Ok(outcome) => {
                if failed_in_a_row > 0 {
                    tracing::info!(failed_in_a_row, "a follow pass succeeded again");
                    failed_in_a_row = 0;
                }
                if !show(&outcome) {
                    return;
                }
                poll
            }
            Err(error) => {
                failed_in_a_row += 1;
                let pause = retry_pause(failed_in_a_row);
                tracing::warn!(
                    error = %crate::one_line(&error),
                    failed_in_a_row,
                    retry_in = ?pause,
                    "a follow pass failed; retrying"
                );
                pause
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut stop => return,
        }
    }
}

/// The pause after the `failed_in_a_row`-th failed pass in a row (from 1):
/// 0.5 s, 1 s, 2 s, … up to 30 s.
fn retry_pause(failed_in_a_row: u32) -> Duration {
    // Past 64 doublings every pause is the longest.
    FAILED_PASS.build().nth(failed_in_a_row.saturating_sub(1).min(64) as usize).unwrap_or(Duration::from_secs(30))
}

/// The time between polls, never below 50 ms.
pub(crate) fn poll_interval(poll: Duration) -> Duration {
    poll.max(Duration::from_millis(50))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_passes_wait_half_a_second_doubling_up_to_thirty() {
        let pauses: Vec<u64> = (1..=9).map(|failed| retry_pause(failed).as_millis() as u64).collect();
        assert_eq!(pauses, [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        assert_eq!(retry_pause(u32::MAX), Duration::from_secs(30));
    }
}
