//! Live ingest: the events of `POST /events` requests → `r_session_events`,
//! many requests per Delta commit (group commit).
//!
//! With a write-ahead log (`wal.rs`, [`LiveSettings::wal`]), a request is
//! acknowledged once its events are synced to the log, a few milliseconds;
//! the committer folds the logged requests into the raw table at most once
//! per fold interval, recording the log's sequence in the same commit (a
//! Delta app transaction), and a restart folds what the table lacks:
//!
//! ```text
//!  append(events) ─► WAL thread (group commit, fdatasync) ─► reply: sequence
//!                          └─► committer queue ─► (as below, every fold interval; the commit carries live-wal-<replica> = last sequence)
//! ```
//!
//! Without one, each request waits for the commit that holds it:
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
mod wal;
mod wal_writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Acknowledge from a write-ahead log instead of waiting for the
    /// commit (default: none).
    pub wal: Option<WalSettings>,
}

/// Where and how live ingest keeps its write-ahead log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSettings {
    /// The log's folder, on a local disk, used by one process at a time.
    pub dir: PathBuf,
    /// The shortest time between two folds into the raw table (default 1 s).
    pub fold_interval: Duration,
    /// Size at which a new segment file is started (default 64 MiB); a
    /// segment is deleted once the raw table holds all its records.
    pub segment_bytes: u64,
}

impl WalSettings {
    /// The default settings for a log in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), fold_interval: Duration::from_secs(1), segment_bytes: 64 << 20 }
    }
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
            wal: None,
        }
    }
}

impl LiveSettings {
    /// Settings that acknowledge from the write-ahead log `wal`. The log,
    /// not the committer's queue, is what makes an answer durable, so the
    /// queue is sized to ride out a slow fold (65,536 requests, about 30 s
    /// at 2,000 requests/s) rather than to hold the answers back, and a
    /// group may take up to 500,000 events, so that a fold that fell behind
    /// catches up in one larger commit.
    pub fn with_wal(wal: WalSettings) -> Self {
        Self { max_events_per_commit: 500_000, queue_capacity: 65_536, wal: Some(wal), ..Self::default() }
    }
}

/// What one acknowledged `append` got.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Appended {
    /// Events in the request.
    pub events: usize,
    /// Where the events are durable now.
    pub durable_in: Durable,
    /// Time from the call to the acknowledgement: queueing, then the sync
    /// of the log or the group's commit.
    pub commit_seconds: f64,
}

impl Appended {
    /// The raw version holding the events, when the append waited for it.
    pub fn raw_version(&self) -> Option<i64> {
        match self.durable_in {
            Durable::RawVersion(version) => Some(version),
            Durable::WalSequence(_) => None,
        }
    }
}

/// Where an acknowledged request's events are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Durable {
    /// In the raw table, at this version or before: the group's commit, or
    /// the version read when all of them were there already.
    RawVersion(i64),
    /// In the write-ahead log, as the record with this sequence; in the raw
    /// table after the next fold (about one fold interval).
    WalSequence(u64),
}

/// What a live ingest run did, returned by [`LiveIngest::shutdown`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LiveReport {
    /// The final counters.
    pub stats: LiveStats,
    /// Wall time since [`LiveIngest::start`].
    pub seconds: f64,
}

/// One request for the committer: an `append` waiting for its commit, or a
/// record of the write-ahead log (already acknowledged).
struct Request {
    events: Vec<Event>,
    /// `None` for a logged record: nobody waits for its commit.
    reply: Option<oneshot::Sender<Reply>>,
    /// The record's sequence in the write-ahead log.
    wal_seq: Option<u64>,
}

/// The raw version holding a request's events (or, from the WAL thread, the
/// record's sequence), or why it failed (one message shared by a group).
type Reply = std::result::Result<i64, Arc<str>>;

/// Requests out of the queue but not committed yet, kept where the next
/// committer finds them if the running one dies.
#[derive(Default)]
struct Backlog {
    /// The group being merged, or one to merge again.
    group: Vec<Request>,
    /// The request that did not fit in the group: it opens the next.
    carried: Option<Request>,
}

/// Handle to the background committer. Clones share it; it is `Send + Sync`.
#[derive(Clone)]
pub struct LiveIngest {
    shared: Arc<Shared>,
}

struct Shared {
    sender: mpsc::Sender<Request>,
    /// With a write-ahead log: appends go to its thread instead.
    wal: Option<WalHandle>,
    closing: watch::Sender<bool>,
    /// The supervisor, which runs the committer (again after a failure).
    committer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<stats::Counters>,
    health: Arc<supervisor::Health>,
    max_events_per_commit: usize,
    started: Instant,
}

struct WalHandle {
    sender: mpsc::Sender<wal_writer::Message>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    replica: String,
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
        Self::start_on(lake, settings, &tokio::runtime::Handle::current()).await
    }

    /// [`LiveIngest::start`] with the committer (folds, compactions) on
    /// `committer_runtime`, for instance one whose threads run at a lower
    /// CPU priority. The write-ahead log's thread, which the answers wait
    /// for, is started from the calling thread and inherits its priority.
    pub async fn start_on(
        lake: Lake,
        settings: LiveSettings,
        committer_runtime: &tokio::runtime::Handle,
    ) -> Result<LiveIngest> {
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
        let backlog = Arc::new(std::sync::Mutex::new(Backlog::default()));
        let (folded, folded_seen) = watch::channel(0);
        let folded = Arc::new(folded);
        let wal = match &settings.wal {
            Some(wal_settings) => Some(open_wal(&table, wal_settings, &sender, folded_seen, &counters).await?),
            None => None,
        };
        let wal_app_id = wal.as_ref().map(|wal| wal::app_id(&wal.replica));
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
                let shared = committer::CommitterShared {
                    closing: closing_seen.clone(),
                    counters: counters.clone(),
                    backlog: backlog.clone(),
                    wal_app_id: wal_app_id.clone(),
                    folded: folded.clone(),
                };
                let health = health.clone();
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
                    committer::Committer::new(lake, settings, table, receiver, shared).run().await;
                    supervisor::Ended::Stopped
                }
            }
        };
        let handle = committer_runtime.spawn(supervisor::supervise(
            health.clone(),
            supervisor::RestartBackoff::default(),
            is_closing,
            start_committer,
        ));
        Ok(LiveIngest {
            shared: Arc::new(Shared {
                sender,
                wal,
                closing,
                committer: Mutex::new(Some(handle)),
                counters,
                health,
                max_events_per_commit,
                started: Instant::now(),
            }),
        })
    }

    /// The write-ahead log's replica id (its commits carry the app id
    /// `live-wal-<replica>`); `None` without a log.
    pub fn wal_replica(&self) -> Option<&str> {
        self.shared.wal.as_ref().map(|wal| wal.replica.as_str())
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
        match &self.shared.wal {
            Some(wal) => {
                if *self.shared.closing.borrow() {
                    return Err(stopped());
                }
                let message = wal_writer::Message::Append { events, reply };
                wal.sender.send(message).await.map_err(|_| stopped())?;
            }
            None => {
                let request = Request { events, reply: Some(reply), wal_seq: None };
                self.shared.sender.send(request).await.map_err(|_| stopped())?;
            }
        }
        self.shared.counters.request_received();
        let answer = replied
            .await
            .map_err(|_| live_error("live ingest stopped before acknowledging; retrying is harmless".to_string()))?
            .map_err(|message| live_error(message.to_string()))?;
        let durable_in = match self.shared.wal {
            Some(_) => Durable::WalSequence(answer as u64),
            None => Durable::RawVersion(answer),
        };
        Ok(Appended { events: count, durable_in, commit_seconds: started.elapsed().as_secs_f64() })
    }

    /// Stops accepting requests (later `append`s fail), commits every
    /// request already queued, waits for a running compaction, and returns
    /// the counters. Works from any clone; a second call waits for the
    /// first and returns the same final counters.
    pub async fn shutdown(self) -> Result<LiveReport> {
        if let Some(wal) = &self.shared.wal {
            // Appends fail from now on; the WAL thread logs those already
            // waiting, hands them to the committer, and stops.
            let _ = wal.sender.send(wal_writer::Message::Close).await;
            let thread = wal.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(thread) = thread {
                tokio::task::spawn_blocking(move || thread.join())
                    .await
                    .map_err(|join| live_error(format!("waiting for the write-ahead log thread failed: {join}")))?
                    .map_err(|_| live_error("the write-ahead log thread panicked".to_string()))?;
            }
        }
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

/// Opens the log, finds which of its records the raw table lacks (those
/// after the sequence its commits recorded), and starts the WAL thread,
/// which hands those to the committer first.
async fn open_wal(
    table: &deltalake::DeltaTable,
    settings: &WalSettings,
    committer: &mpsc::Sender<Request>,
    folded: watch::Receiver<u64>,
    counters: &Arc<stats::Counters>,
) -> Result<WalHandle> {
    let (dir, segment_bytes) = (settings.dir.clone(), settings.segment_bytes);
    let wal::Opened { mut wal, records } = tokio::task::spawn_blocking(move || wal::Wal::open(&dir, segment_bytes))
        .await
        .map_err(|join| live_error(format!("opening the write-ahead log failed: {join}")))??;
    let folded_through =
        crate::txn::applied_version(table, RAW.name, &wal.app_id()).await?.map_or(0, |seq| seq.max(0) as u64);
    wal.continue_after(folded_through)?;
    let pending: Vec<wal::Record> = records.into_iter().filter(|record| record.seq > folded_through).collect();
    counters.folded_sequence.store(folded_through, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        dir = %settings.dir.display(),
        replica = wal.replica(),
        folded_through,
        pending = pending.len(),
        "write-ahead log open"
    );
    let replica = wal.replica().to_string();
    let (sender, receiver) = mpsc::channel(WAL_QUEUE_CAPACITY);
    let thread = wal_writer::spawn(wal, pending, receiver, committer.clone(), folded, counters.clone())
        .map_err(|error| live_error(format!("starting the write-ahead log thread failed: {error}")))?;
    Ok(WalHandle { sender, thread: std::sync::Mutex::new(Some(thread)), replica })
}

/// Appends waiting for the WAL thread: enough for one sync's worth.
const WAL_QUEUE_CAPACITY: usize = 8_192;

fn live_error(message: String) -> LakeError {
    LakeError::Unexpected { table: RAW.name, message }
}

fn stopped() -> LakeError {
    live_error("live ingest is stopped; nothing was written".to_string())
}
