//! Keeps the committer running: a committer task that dies (a panic deep in
//! a MERGE) is started again after a backoff, and meanwhile live ingest
//! reports itself down, so that `/ready` says so and `append` fails at once
//! instead of queueing for a task that no longer exists.
//!
//! What survives a restart: the queue (the receiver sits behind a mutex
//! that the dead task's guard released while unwinding), the counters, and
//! the closing signal. What does not: the group being committed (its
//! requests are answered with an error: nothing of them was acknowledged,
//! and retrying them is harmless), a request carried to the next group, and
//! the list of dates waiting for compaction (they are compacted when live
//! commits touch them again). So each death consumes at least one request:
//! a request that makes the committer panic every time cannot loop for ever.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tracing::{error, info};

/// Whether the committer is running, shared by the supervisor (writer) and
/// every [`super::LiveIngest`] clone (readers).
#[derive(Debug, Default)]
pub(super) struct Health {
    /// Why the committer is not running; `None` while it runs.
    down: Mutex<Option<Arc<str>>>,
    /// Times the committer was started again after dying.
    pub(super) restarts: AtomicU64,
}

impl Health {
    /// `Err(why)` while the committer is not running.
    pub(super) fn check(&self) -> Result<(), Arc<str>> {
        match &*self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    pub(super) fn set_down(&self, why: impl Into<Arc<str>>) {
        *self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why.into());
    }

    fn set_up(&self) {
        *self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// How long to wait before starting a dead committer again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RestartBackoff {
    /// The first wait; each further death in a row doubles it.
    pub(super) first: Duration,
    /// The longest wait.
    pub(super) max: Duration,
    /// A committer that ran this long before dying starts over from `first`.
    pub(super) healthy_after: Duration,
}

impl Default for RestartBackoff {
    /// 200 ms doubling up to 10 s; reset after a minute of running.
    fn default() -> Self {
        Self { first: Duration::from_millis(200), max: Duration::from_secs(10), healthy_after: Duration::from_secs(60) }
    }
}

impl RestartBackoff {
    /// The wait after the `deaths`-th death in a row (from 1).
    fn delay(&self, deaths: u32) -> Duration {
        let policy = ExponentialBuilder::new().with_min_delay(self.first).with_max_delay(self.max).without_max_times();
        // Past 64 doublings every wait is the longest.
        policy.build().nth(deaths.saturating_sub(1).min(64) as usize).unwrap_or(self.max)
    }
}

/// How one start of the committer ended.
pub(super) enum Ended {
    /// It stopped as asked (shutdown, queue drained): supervision ends.
    Stopped,
    /// It could not start (e.g. the raw table could not be opened).
    NotStarted(String),
    /// It ran and failed; the message says why.
    Failed(String),
}

/// Starts the committer with `start` and runs it, again and again while it
/// fails, waiting [`RestartBackoff`] between attempts. `start` is given the
/// attempt number (from 0) and returns the committer's whole run: opening
/// what it needs and serving until stopped. Each run is a task of its own,
/// so a panic ends that task only. `is_closing` tells whether shutdown was
/// asked for: then a committer that cannot even start is not tried again
/// (each run that starts consumes queued requests, so restarts while
/// closing end; one that cannot start would be tried for ever). The
/// requests still queued are then answered with an error.
pub(super) async fn supervise<Start, Run>(
    health: Arc<Health>,
    backoff: RestartBackoff,
    is_closing: impl Fn() -> bool,
    mut start: Start,
) where
    Start: FnMut(u64) -> Run,
    Run: Future<Output = Ended> + Send + 'static,
{
    let mut deaths_in_a_row = 0u32;
    for attempt in 0u64.. {
        let started = Instant::now();
        let ended = match tokio::spawn(start(attempt)).await {
            Ok(ended) => ended,
            Err(join) if join.is_panic() => Ended::Failed(format!("the committer panicked: {}", panic_text(join))),
            // The runtime is shutting down: nothing left to supervise.
            Err(_) => return,
        };
        let reason = match ended {
            Ended::Stopped => return,
            Ended::NotStarted(reason) if is_closing() => {
                error!(error = %reason, "the live committer cannot start again while shutting down; queued events are not committed");
                health.set_down(format!("live ingest is stopped: {reason}"));
                return;
            }
            Ended::NotStarted(reason) | Ended::Failed(reason) => reason,
        };
        if started.elapsed() >= backoff.healthy_after {
            deaths_in_a_row = 0;
        }
        deaths_in_a_row += 1;
        let delay = backoff.delay(deaths_in_a_row);
        health.set_down(format!("the live committer is down ({reason}); restarting"));
        error!(
            error = %reason,
            attempt,
            deaths_in_a_row,
            "the live committer failed; POST /events answers 503 until it is restarted in {delay:?}"
        );
        tokio::time::sleep(delay).await;
        health.restarts.fetch_add(1, Relaxed);
    }
}

/// Marks the committer up: called by a run once it has started.
pub(super) fn started(health: &Health, attempt: u64) {
    if attempt > 0 {
        info!(attempt, "the live committer is running again");
    }
    health.set_up();
}

fn panic_text(join: tokio::task::JoinError) -> String {
    let payload = join.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// What `Health::check` said.
    type HealthSeen = Result<(), Arc<str>>;

    fn quick() -> RestartBackoff {
        RestartBackoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(4),
            healthy_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_wait_doubles_up_to_the_cap() {
        let backoff = RestartBackoff::default();
        let waits: Vec<u128> = (1..=8).map(|deaths| backoff.delay(deaths).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(10));
    }

    /// A committer that panics, then one that cannot start, then one that
    /// runs until stopped: each failure is followed by a restart, health is
    /// down between them (with the reason) and up while one runs.
    #[tokio::test]
    async fn a_dead_committer_is_restarted_and_reported_down_meanwhile() {
        let health = Arc::new(Health::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut stopped = Some(stopped);
        let seen_at_start: Arc<Mutex<Vec<HealthSeen>>> = Arc::default();
        let supervisor = tokio::spawn(supervise(health.clone(), quick(), || false, {
            let health = health.clone();
            let seen_at_start = seen_at_start.clone();
            move |attempt| {
                seen_at_start.lock().unwrap().push(health.check());
                let health = health.clone();
                let stopped = if attempt == 2 { stopped.take() } else { None };
                async move {
                    match attempt {
                        0 => {
                            started(&health, attempt);
                            panic!("boom in a MERGE")
                        }
                        1 => Ended::NotStarted("opening the raw table: no such folder".into()),
                        _ => {
                            started(&health, attempt);
                            let _ = stopped.expect("one run left").await;
                            Ended::Stopped
                        }
                    }
                }
            }
        }));
        // Wait for the third run to be up.
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen_at_start.lock().unwrap().len() < 3 || health.check().is_err() {
            assert!(Instant::now() < deadline, "the committer was not restarted: {:?}", seen_at_start.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let seen = seen_at_start.lock().unwrap().clone();
        assert_eq!(seen[0], Ok(()), "up at first");
        let down = seen[1].clone().unwrap_err();
        assert!(down.contains("panicked: boom in a MERGE"), "{down}");
        let down = seen[2].clone().unwrap_err();
        assert!(down.contains("no such folder"), "{down}");
        assert_eq!(health.restarts.load(Relaxed), 2);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), supervisor).await.expect("supervision ends").unwrap();
        assert_eq!(health.check(), Ok(()));
    }

    #[tokio::test]
    async fn a_committer_that_stops_as_asked_is_not_restarted() {
        let health = Arc::new(Health::default());
        let starts = Arc::new(AtomicU64::new(0));
        let counted = starts.clone();
        supervise(
            health.clone(),
            quick(),
            || true,
            move |_| {
                counted.fetch_add(1, Relaxed);
                async { Ended::Stopped }
            },
        )
        .await;
        assert_eq!(starts.load(Relaxed), 1);
        assert_eq!(health.restarts.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn while_closing_a_committer_that_cannot_start_is_not_tried_again() {
        let health = Arc::new(Health::default());
        let closing = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(AtomicU64::new(0));
        let counted = starts.clone();
        let closing_seen = closing.clone();
        supervise(
            health.clone(),
            quick(),
            move || closing_seen.load(Relaxed),
            move |attempt| {
                counted.fetch_add(1, Relaxed);
                let closing = closing.clone();
                async move {
                    if attempt == 0 {
                        // Dies while shutdown is asked for: tried again once.
                        closing.store(true, Relaxed);
                        Ended::Failed("died while draining".into())
                    } else {
                        Ended::NotStarted("the lake is gone".into())
                    }
                }
            },
        )
        .await;
        assert_eq!(starts.load(Relaxed), 2);
        assert!(health.check().unwrap_err().contains("the lake is gone"));
    }
}
