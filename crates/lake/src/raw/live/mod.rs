//! Live ingest: the events of `POST /events` requests → `r_session_events`,
//! many requests per Delta commit (group commit), each acknowledged only
//! once the commit holding its events is durable.
//!
//! ```text
//!  append(events) ─► bounded queue ─► committer task (owns the raw table handle)
//!        ▲            (backpressure)     │ takes every request already queued (≤ max_events_per_commit)
//!        │                               │ first of each event per date, ONE insert-only MERGE for all dates
//!        │                               │ commit conflict → reload, MERGE again
//!        │                               │ fsync the new data files, the commit file, _delta_log
//!        └──── reply: the raw version ◄──┘
//!                                        └─► every N commits: compaction task (OPTIMIZE of the dates touched)
//! ```
//!
//! A supervisor (`supervisor.rs`) starts the committer again, with backoff,
//! when it dies (a panic): the queue survives, and [`LiveIngest::health`]
//! reports live ingest down until the committer runs again (the API's
//! `/ready` answers 503 meanwhile, and `append` fails at once).
//!
//! An event's identity is the file-based raw stage's: EVENT_DATE +
//! UNIQUE_ID_ROW. So retrying a batch inserts nothing new, and a raw stage
//! run writing the same table at the same time cannot duplicate a row
//! either: each MERGE's commit sees the other's files in a partition it read
//! as a conflict, and is re-run on the reloaded table.
//!
//! Compaction commits carry `dataChange = false`: the change data feed that
//! the sessions stage reads skips them, so they add no rows downstream.

mod committer;
mod compaction;
mod durable;
mod stats;
mod supervisor;

use std::sync::Arc;
use std::time::Instant;

use sessionlake_model::Event;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::schema::RAW;

pub use compaction::{
    lease_folder as compaction_lease_folder, optimize_dates as compact_dates,
    optimize_dates_under as compact_dates_under,
};
pub use stats::LiveStats;

/// Settings of live ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSettings {
    /// Most events one commit takes (default 50,000): a group of requests
    /// never exceeds it, and a request larger than it is refused.
    pub max_events_per_commit: usize,
    /// Requests waiting for the committer (default 4,096); `append` waits
    /// while the queue is full (backpressure).
    pub queue_capacity: usize,
    /// After this many live commits (default 64), compact the EVENT_DATE
    /// partitions they touched, in the background; 0 never compacts.
    pub compact_after_commits: u64,
    /// Target size in bytes of the files compaction writes (default 64 MiB).
    pub compact_target_size: u64,
    /// Fsync the new data files, the commit file and the `_delta_log`
    /// folder before acknowledging (default true).
    pub fsync: bool,
    /// How many times a MERGE that lost a commit race is re-run on the
    /// reloaded table (default 10); compaction uses the same bound.
    pub max_conflict_retries: u32,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            max_events_per_commit: 50_000,
            queue_capacity: 4_096,
            compact_after_commits: 64,
            compact_target_size: 64 << 20,
            fsync: true,
            max_conflict_retries: 10,
        }
    }
}

/// What one acknowledged `append` got.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Appended {
    /// Events in the request.
    pub events: usize,
    /// A raw table version holding every event of the request: the group's
    /// commit, or the version read when all of them were there already.
    pub raw_version: i64,
    /// Time from the call to the acknowledgement: queueing, the wait for
    /// the commit in progress, then the group's own commit.
    pub commit_seconds: f64,
}

/// What a live ingest run did, returned by [`LiveIngest::shutdown`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LiveReport {
    /// The final counters.
    pub stats: LiveStats,
    /// Wall time since [`LiveIngest::start`].
    pub seconds: f64,
}

/// One `append` waiting for its commit.
struct Request {
    events: Vec<Event>,
    reply: oneshot::Sender<Reply>,
}

/// The raw version holding a request's events, or why its group failed
/// (one message shared by every request of the group).
type Reply = std::result::Result<i64, Arc<str>>;

/// Handle to the background committer. Clones share it; it is `Send + Sync`.
#[derive(Clone)]
pub struct LiveIngest {
    shared: Arc<Shared>,
}

struct Shared {
    sender: mpsc::Sender<Request>,
    closing: watch::Sender<bool>,
    /// The supervisor, which runs the committer (again after a failure).
    committer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<stats::Counters>,
    health: Arc<supervisor::Health>,
    max_events_per_commit: usize,
    started: Instant,
}

impl std::fmt::Debug for LiveIngest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("LiveIngest").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl LiveIngest {
    /// Opens (or creates) the raw table and starts the committer task, under
    /// its supervisor, on the current Tokio runtime.
    pub async fn start(lake: Lake, settings: LiveSettings) -> Result<LiveIngest> {
        let table = lake.open_or_create(&RAW).await?;
        let settings = LiveSettings {
            max_events_per_commit: settings.max_events_per_commit.max(1),
            queue_capacity: settings.queue_capacity.max(1),
            ..settings
        };
        let (sender, receiver) = mpsc::channel(settings.queue_capacity);
        // Held by the running committer; a dead one's guard is released as
        // its task unwinds, so the next one takes the same queue.
        let receiver = Arc::new(Mutex::new(receiver));
        let (closing, closing_seen) = watch::channel(false);
        let counters = Arc::new(stats::Counters::new(table.version().map(|version| version as i64)));
        let health = Arc::new(supervisor::Health::default());
        let max_events_per_commit = settings.max_events_per_commit;
        let is_closing = {
            let closing_seen = closing_seen.clone();
            move || *closing_seen.borrow()
        };
        let mut opened = Some(table);
        let start_committer = {
            let (counters, health) = (counters.clone(), health.clone());
            move |attempt: u64| {
                let (lake, settings, receiver) = (lake.clone(), settings.clone(), receiver.clone());
                // A clone sees a shutdown asked for before it existed.
                let (closing_seen, counters, health) = (closing_seen.clone(), counters.clone(), health.clone());
                let opened = opened.take();
                async move {
                    let table = match opened {
                        Some(table) => table,
                        None => match lake.open_or_create(&RAW).await {
                            Ok(table) => table,
                            Err(error) => return supervisor::Ended::NotStarted(format!("{error}")),
                        },
                    };
                    let receiver = receiver.lock_owned().await;
                    supervisor::started(&health, attempt);
                    committer::Committer::new(lake, settings, table, receiver, closing_seen, counters).run().await;
                    supervisor::Ended::Stopped
                }
            }
        };
        let handle = tokio::spawn(supervisor::supervise(
            health.clone(),
            supervisor::RestartBackoff::default(),
            is_closing,
            start_committer,
        ));
        Ok(LiveIngest {
            shared: Arc::new(Shared {
                sender,
                closing,
                committer: Mutex::new(Some(handle)),
                counters,
                health,
                max_events_per_commit,
                started: Instant::now(),
            }),
        })
    }

    /// `Ok` while the committer runs; an error saying why while it does
    /// not: it died and is being restarted, or live ingest is shutting
    /// down. (`append` fails at once meanwhile.)
    pub fn health(&self) -> Result<()> {
        if *self.shared.closing.borrow() {
            return Err(live_error("live ingest is shutting down".to_string()));
        }
        self.shared.health.check().map_err(|why| live_error(why.to_string()))
    }

    /// Queues the events and waits until the commit that holds them is
    /// durable. Fails when live ingest has stopped, when the request is
    /// larger than [`LiveSettings::max_events_per_commit`], or when its
    /// group's commit failed (then nothing of the request is acknowledged,
    /// and retrying it is harmless).
    pub async fn append(&self, events: Vec<Event>) -> Result<Appended> {
        let started = Instant::now();
        let count = events.len();
        let limit = self.shared.max_events_per_commit;
        if count > limit {
            return Err(live_error(format!(
                "a request of {count} events is larger than one commit takes ({limit} events)"
            )));
        }
        if let Err(why) = self.shared.health.check() {
            return Err(live_error(format!("{why}; nothing was written, retry shortly")));
        }
        let (reply, replied) = oneshot::channel();
        self.shared.sender.send(Request { events, reply }).await.map_err(|_| stopped())?;
        self.shared.counters.request_received();
        let raw_version = replied
            .await
            .map_err(|_| live_error("live ingest stopped before acknowledging; retrying is harmless".to_string()))?
            .map_err(|message| live_error(message.to_string()))?;
        Ok(Appended { events: count, raw_version, commit_seconds: started.elapsed().as_secs_f64() })
    }

    /// Stops accepting requests (later `append`s fail), commits every
    /// request already queued, waits for a running compaction, and returns
    /// the counters. Works from any clone; a second call waits for the
    /// first and returns the same final counters.
    pub async fn shutdown(self) -> Result<LiveReport> {
        self.shared.closing.send_replace(true);
        let mut committer = self.shared.committer.lock().await;
        if let Some(handle) = committer.take() {
            handle.await.map_err(|join| live_error(format!("the live committer task failed: {join}")))?;
        }
        Ok(LiveReport { stats: self.stats(), seconds: self.shared.started.elapsed().as_secs_f64() })
    }

    /// The counters so far (atomics: cheap, never waits on a commit).
    pub fn stats(&self) -> LiveStats {
        let sender = &self.shared.sender;
        let mut stats = self.shared.counters.snapshot(sender.max_capacity() - sender.capacity());
        stats.committer_restarts = self.shared.health.restarts.load(std::sync::atomic::Ordering::Relaxed);
        stats
    }
}

fn live_error(message: String) -> LakeError {
    LakeError::Unexpected { table: RAW.name, message }
}

fn stopped() -> LakeError {
    live_error("live ingest is stopped; nothing was written".to_string())
}
