//! The committer task: groups queued requests, MERGEs each group in one
//! commit, makes it durable, answers every request of the group, and starts
//! compactions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use deltalake::DeltaTable;
use sessionlake_model::Event;
use tokio::sync::{OwnedMutexGuard, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::compaction::{self, CompactionOutcome};
use super::stats::Counters;
use super::{Backlog, LiveSettings, Reply, Request, durable};
use crate::error::Result;
use crate::keys::FilterCache;
use crate::lake::Lake;
use crate::raw::{FILTER_CACHE_BYTES, distinct_events, merge_new_rows, raw_batch};
use crate::schema::RAW;

/// The committer's state; [`Committer::run`] consumes it.
pub(super) struct Committer {
    lake: Lake,
    settings: LiveSettings,
    /// The raw table as of the last commit seen; only this task writes
    /// through it.
    table: DeltaTable,
    /// The key filters of the raw files this committer looked into.
    filters: FilterCache,
    /// The queue, held for this committer's life: if it dies, the guard is
    /// released and the next committer takes the same queue.
    receiver: OwnedMutexGuard<mpsc::Receiver<Request>>,
    closing: watch::Receiver<bool>,
    is_closing: bool,
    counters: Arc<Counters>,
    /// Requests taken from the queue and not yet committed (the group being
    /// merged, the request that opens the next one): shared with the next
    /// committer, which resumes them if this one dies.
    backlog: Arc<std::sync::Mutex<Backlog>>,
    /// With a write-ahead log: the app id its folded sequence is recorded
    /// under, and where the WAL thread learns it.
    wal_app_id: Option<String>,
    folded: Arc<watch::Sender<u64>>,
    /// Folds of logged records that failed in a row.
    fold_failures: u32,
    /// Set once logged records were given up on (only while shutting down,
    /// after repeated failures): no later commit may then record a folded
    /// sequence, or the next start would skip them.
    gave_up: bool,
    last_group_started: Option<Instant>,
    /// Dates written by live commits since the last compaction started.
    touched_dates: BTreeSet<i32>,
    commits_since_compaction: u64,
    compaction: Option<JoinHandle<CompactionOutcome>>,
}

/// What one group's MERGE did.
struct GroupCommit {
    raw_version: i64,
    distinct_events: usize,
    inserted: u64,
    committed: bool,
    conflicts_retried: u32,
    files_scanned: usize,
    files_skipped: usize,
    merge_ms: u64,
    fsync_ms: u64,
}

impl Committer {
    pub(super) fn new(
        lake: Lake,
        settings: LiveSettings,
        table: DeltaTable,
        receiver: OwnedMutexGuard<mpsc::Receiver<Request>>,
        shared: CommitterShared,
    ) -> Self {
        let CommitterShared { closing, counters, backlog, wal_app_id, folded } = shared;
        Self {
            lake,
            settings,
            table,
            filters: FilterCache::new(FILTER_CACHE_BYTES),
            receiver,
            closing,
            is_closing: false,
            counters,
            backlog,
            wal_app_id,
            folded,
            fold_failures: 0,
            gave_up: false,
            last_group_started: None,
            touched_dates: BTreeSet::new(),
            commits_since_compaction: 0,
            compaction: None,
        }
    }

    /// Serves requests until live ingest is shut down (or every handle is
    /// dropped) and the queue is drained, then waits for a running
    /// compaction.
    pub(super) async fn run(mut self) {
        loop {
            // A group left by a failed fold or by a committer that died.
            let mut group = std::mem::take(&mut self.backlog().group);
            if group.is_empty() {
                let carried = self.backlog().carried.take();
                let first = match carried {
                    Some(request) => request,
                    None => match self.next_request().await {
                        Some(request) => request,
                        None => break,
                    },
                };
                self.wait_fold_interval().await;
                group = self.take_group(first);
            }
            self.commit_group(group).await;
            self.maybe_compact().await;
        }
        self.collect_compaction().await;
        info!(stats = ?self.counters.snapshot(0), "live ingest stopped");
    }

    /// Waits for the next request; `None` once closed and drained.
    async fn next_request(&mut self) -> Option<Request> {
        loop {
            if self.is_closing {
                // After `close`, buffered requests still come out, then `None`.
                return self.receiver.recv().await;
            }
            tokio::select! {
                biased;
                changed = self.closing.changed() => self.note_closing(changed.is_err()),
                request = self.receiver.recv() => return request,
            }
        }
    }

    fn note_closing(&mut self, sender_gone: bool) {
        if sender_gone || *self.closing.borrow_and_update() {
            self.receiver.close();
            self.is_closing = true;
        }
    }

    fn backlog(&self) -> std::sync::MutexGuard<'_, Backlog> {
        self.backlog.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// With a write-ahead log, groups start at most once per fold interval
    /// (nobody waits for them, and fewer commits make bigger files); the
    /// requests arriving meanwhile join the next group.
    async fn wait_fold_interval(&mut self) {
        let interval = self.settings.wal.as_ref().map_or(Duration::ZERO, |wal| wal.fold_interval);
        let Some(last) = self.last_group_started else { return };
        let until = last + interval;
        while !self.is_closing && Instant::now() < until {
            tokio::select! {
                biased;
                changed = self.closing.changed() => self.note_closing(changed.is_err()),
                () = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }

    /// `first` plus every request already queued, up to the event limit,
    /// without waiting for more.
    fn take_group(&mut self, first: Request) -> Vec<Request> {
        let limit = self.settings.max_events_per_commit;
        let mut events = first.events.len();
        let mut group = vec![first];
        while events < limit {
            let Ok(request) = self.receiver.try_recv() else { break };
            if events + request.events.len() > limit {
                self.backlog().carried = Some(request);
                break;
            }
            events += request.events.len();
            group.push(request);
        }
        debug_assert!(events <= limit);
        group
    }

    async fn commit_group(&mut self, group: Vec<Request>) {
        let started = Instant::now();
        self.last_group_started = Some(started);
        let events: Vec<Event> = group.iter().flat_map(|request| request.events.iter().copied()).collect();
        let folds_to = group.iter().filter_map(|request| request.wal_seq).max();
        let markers = match (&self.wal_app_id, folds_to) {
            (Some(app_id), Some(seq)) if !self.gave_up => vec![(app_id.clone(), seq as i64)],
            _ => Vec::new(),
        };
        let requests = group.len();
        // Held where the next committer finds it, should this one die in
        // the merge.
        self.backlog().group = group;
        let outcome = self.merge_events(&events, markers).await;
        let group = std::mem::take(&mut self.backlog().group);
        let counters = &self.counters;
        counters.groups.fetch_add(1, Relaxed);
        match outcome {
            Ok(commit) => {
                let elapsed = started.elapsed();
                info!(
                    requests,
                    events = events.len(),
                    distinct = commit.distinct_events,
                    inserted = commit.inserted,
                    version = commit.raw_version,
                    committed = commit.committed,
                    folded_through = folds_to,
                    files_scanned = commit.files_scanned,
                    files_skipped = commit.files_skipped,
                    conflicts_retried = commit.conflicts_retried,
                    merge_ms = commit.merge_ms,
                    fsync_ms = commit.fsync_ms,
                    ms = elapsed.as_millis() as u64,
                    "committed live events"
                );
                let answered: Vec<&Request> = group.iter().filter(|request| request.reply.is_some()).collect();
                Counters::add(&counters.requests_acknowledged, answered.len());
                Counters::add(
                    &counters.events_acknowledged,
                    answered.iter().map(|request| request.events.len()).sum::<usize>(),
                );
                Counters::add(&counters.rows_inserted, commit.inserted);
                Counters::add(&counters.duplicates, events.len() as u64 - commit.inserted);
                Counters::add(&counters.conflicts_retried, commit.conflicts_retried);
                Counters::add(&counters.target_files_scanned, commit.files_scanned);
                Counters::add(&counters.target_files_skipped, commit.files_skipped);
                counters.last_raw_version.store(commit.raw_version, Relaxed);
                counters.last_commit_micros.store(elapsed.as_micros() as u64, Relaxed);
                self.fold_failures = 0;
                if let Some(seq) = folds_to
                    && !self.gave_up
                {
                    counters.folded_sequence.store(seq, Relaxed);
                    self.folded.send_replace(seq);
                }
                reply_all(group, Ok(commit.raw_version));
            }
            Err(failure) => {
                error!(requests, events = events.len(), error = %failure, "live commit failed");
                // One line: delta-rs's conflict messages carry a "Help:" line.
                let reason = failure.to_string().replace('\n', " ");
                let (waiting, logged): (Vec<Request>, Vec<Request>) =
                    group.into_iter().partition(|request| request.reply.is_some());
                Counters::add(&counters.requests_failed, waiting.len());
                let message: Arc<str> = format!("the commit of {} events failed: {reason}", events.len()).into();
                reply_all(waiting, Err(message));
                // The table may have moved on (or the failure left our view
                // stale): reload before the next attempt.
                if let Err(reload) = self.table.update_state().await {
                    warn!(error = %reload, "reloading the raw table after a failed live commit failed");
                }
                if !logged.is_empty() {
                    self.retry_logged(logged).await;
                }
            }
        }
    }

    /// Logged records were acknowledged already: a failed fold is tried
    /// again, after a backoff, before anything newer. Only while shutting
    /// down are they left, after a few tries, to the next start (which
    /// folds them from the log).
    async fn retry_logged(&mut self, logged: Vec<Request>) {
        self.fold_failures += 1;
        self.counters.fold_failures.fetch_add(1, Relaxed);
        if self.is_closing && self.fold_failures >= FOLD_TRIES_WHEN_CLOSING {
            warn!(
                requests = logged.len(),
                "shutting down: these logged requests stay in the write-ahead log and are folded at the next start"
            );
            self.gave_up = true;
            return;
        }
        let wait =
            FOLD_RETRY.build().nth(self.fold_failures.saturating_sub(1).min(64) as usize).unwrap_or(FOLD_RETRY_MAX);
        self.backlog().group = logged;
        tokio::time::sleep(wait).await;
    }

    /// ONE insert-only MERGE for every date of the group, with `markers`
    /// in its commit, then fsync.
    async fn merge_events(&mut self, events: &[Event], markers: Vec<(String, i64)>) -> Result<GroupCommit> {
        let mut by_date: BTreeMap<i32, Vec<Event>> = BTreeMap::new();
        for event in events {
            by_date.entry(event.event_day()).or_default().push(*event);
        }
        // The same identity as the file-based stage: first of each
        // (kind, session) within a date.
        let distinct: Vec<Event> = by_date.values().flat_map(|events| distinct_events(events)).collect();
        let read_version = version_of(&self.table);
        if distinct.is_empty() {
            return Ok(GroupCommit {
                raw_version: read_version,
                distinct_events: 0,
                inserted: 0,
                committed: false,
                conflicts_retried: 0,
                files_scanned: 0,
                files_skipped: 0,
                merge_ms: 0,
                fsync_ms: 0,
            });
        }
        let batch = raw_batch(&distinct, chrono::Utc::now())?;
        let dates: BTreeSet<i32> = by_date.keys().copied().collect();
        let merged = merge_new_rows(
            self.table.clone(),
            batch,
            &dates,
            markers,
            self.settings.max_conflict_retries,
            &self.filters,
        )
        .await?;
        self.table = merged.table;
        let inserted = merged.inserted;
        // Nothing new makes no commit.
        let committed = inserted > 0;
        let raw_version = version_of(&self.table);
        let mut fsync_ms = 0;
        if committed {
            self.counters.commits.fetch_add(1, Relaxed);
            self.commits_since_compaction += 1;
            self.touched_dates.extend(by_date.keys().copied());
            // An object store acknowledges a put once it is durable; a local
            // lake needs the fsyncs.
            if self.settings.fsync
                && let Some(root) = self.lake.local_root()
            {
                let fsync_started = Instant::now();
                durable::sync_commit(root.join(RAW.dir), self.table.table_url().clone(), raw_version).await?;
                fsync_ms = fsync_started.elapsed().as_millis() as u64;
            }
        }
        Ok(GroupCommit {
            raw_version,
            distinct_events: distinct.len(),
            inserted,
            committed,
            conflicts_retried: merged.conflicts_retried,
            files_scanned: merged.files_scanned,
            files_skipped: merged.files_skipped,
            merge_ms: merged.elapsed.as_millis() as u64,
            fsync_ms,
        })
    }

    /// Starts a compaction of the dates touched so far when enough commits
    /// were made and none is running.
    async fn maybe_compact(&mut self) {
        if self.compaction.as_ref().is_some_and(JoinHandle::is_finished) {
            self.collect_compaction().await;
        }
        let every = self.settings.compact_after_commits;
        if every == 0 || self.commits_since_compaction < every || self.compaction.is_some() {
            return;
        }
        let dates = std::mem::take(&mut self.touched_dates);
        self.commits_since_compaction = 0;
        if dates.is_empty() {
            return;
        }
        self.compaction = Some(tokio::spawn(compaction::compact(
            self.lake.clone(),
            dates,
            self.settings.compact_target_size,
            self.settings.max_conflict_retries,
            self.counters.clone(),
        )));
    }

    /// Waits for the compaction in progress, if any; the dates of a failed
    /// one are compacted next time.
    async fn collect_compaction(&mut self) {
        let Some(handle) = self.compaction.take() else { return };
        match handle.await {
            Ok(outcome) if outcome.succeeded => {}
            Ok(outcome) => self.touched_dates.extend(outcome.dates),
            Err(join) => warn!(error = %join, "the compaction task failed"),
        }
    }
}

/// The waits between failed folds of logged records: 200 ms doubling to 10 s.
const FOLD_RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(200))
    .with_max_delay(FOLD_RETRY_MAX)
    .without_max_times();
const FOLD_RETRY_MAX: Duration = Duration::from_secs(10);
/// Tries of a failing fold while shutting down before leaving it to the log.
const FOLD_TRIES_WHEN_CLOSING: u32 = 3;

/// What every committer of one live ingest shares.
pub(super) struct CommitterShared {
    pub(super) closing: watch::Receiver<bool>,
    pub(super) counters: Arc<Counters>,
    pub(super) backlog: Arc<std::sync::Mutex<Backlog>>,
    pub(super) wal_app_id: Option<String>,
    pub(super) folded: Arc<watch::Sender<u64>>,
}

fn reply_all(group: Vec<Request>, reply: Reply) {
    for request in group {
        // A caller that gave up waiting is not an error.
        if let Some(sender) = request.reply {
            let _ = sender.send(reply.clone());
        }
    }
}

fn version_of(table: &DeltaTable) -> i64 {
    table.version().map_or(-1, |version| version as i64)
}
