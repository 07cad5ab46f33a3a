//! The committer task: groups queued requests, MERGEs each group in one
//! commit, makes it durable, answers every request of the group, and starts
//! compactions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use deltalake::DeltaTable;
use sessionlake_model::Event;
use tokio::sync::{OwnedMutexGuard, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::compaction::{self, CompactionOutcome};
use super::stats::Counters;
use super::{LiveSettings, Reply, Request, durable};
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
    /// A request that did not fit in the previous group: it opens the next.
    carried: Option<Request>,
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
        closing: watch::Receiver<bool>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            lake,
            settings,
            table,
            filters: FilterCache::new(FILTER_CACHE_BYTES),
            receiver,
            closing,
            is_closing: false,
            counters,
            carried: None,
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
            let first = match self.carried.take() {
                Some(request) => request,
                None => match self.next_request().await {
                    Some(request) => request,
                    None => break,
                },
            };
            let group = self.take_group(first);
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
                changed = self.closing.changed() => {
                    if changed.is_err() || *self.closing.borrow_and_update() {
                        self.receiver.close();
                        self.is_closing = true;
                    }
                }
                request = self.receiver.recv() => return request,
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
                self.carried = Some(request);
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
        let events: usize = group.iter().map(|request| request.events.len()).sum();
        let outcome = self.merge_group(&group).await;
        let counters = &self.counters;
        counters.groups.fetch_add(1, Relaxed);
        match outcome {
            Ok(commit) => {
                let elapsed = started.elapsed();
                info!(
                    requests = group.len(),
                    events,
                    distinct = commit.distinct_events,
                    inserted = commit.inserted,
                    version = commit.raw_version,
                    committed = commit.committed,
                    files_scanned = commit.files_scanned,
                    files_skipped = commit.files_skipped,
                    conflicts_retried = commit.conflicts_retried,
                    merge_ms = commit.merge_ms,
                    fsync_ms = commit.fsync_ms,
                    ms = elapsed.as_millis() as u64,
                    "committed live events"
                );
                Counters::add(&counters.requests_acknowledged, group.len());
                Counters::add(&counters.events_acknowledged, events);
                Counters::add(&counters.rows_inserted, commit.inserted);
                Counters::add(&counters.duplicates, events as u64 - commit.inserted);
                Counters::add(&counters.conflicts_retried, commit.conflicts_retried);
                Counters::add(&counters.target_files_scanned, commit.files_scanned);
                Counters::add(&counters.target_files_skipped, commit.files_skipped);
                counters.last_raw_version.store(commit.raw_version, Relaxed);
                counters.last_commit_micros.store(elapsed.as_micros() as u64, Relaxed);
                reply_all(group, Ok(commit.raw_version));
            }
            Err(failure) => {
                error!(requests = group.len(), events, error = %failure, "live commit failed; its requests get the error");
                Counters::add(&counters.requests_failed, group.len());
                // One line: delta-rs's conflict messages carry a "Help:" line.
                let reason = failure.to_string().replace('\n', " ");
                let message: Arc<str> = format!("the commit of {events} events failed: {reason}").into();
                reply_all(group, Err(message));
                // The table may have moved on (or the failure left our view
                // stale): reload before the next group.
                if let Err(reload) = self.table.update_state().await {
                    warn!(error = %reload, "reloading the raw table after a failed live commit failed");
                }
            }
        }
    }

    /// ONE insert-only MERGE for every date of the group, then fsync.
    async fn merge_group(&mut self, group: &[Request]) -> Result<GroupCommit> {
        let mut by_date: BTreeMap<i32, Vec<Event>> = BTreeMap::new();
        for event in group.iter().flat_map(|request| &request.events) {
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
            Vec::new(),
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

fn reply_all(group: Vec<Request>, reply: Reply) {
    for request in group {
        // A caller that gave up waiting is not an error.
        let _ = request.reply.send(reply.clone());
    }
}

fn version_of(table: &DeltaTable) -> i64 {
    table.version().map_or(-1, |version| version as i64)
}
