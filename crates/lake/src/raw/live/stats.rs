//! Live ingest's counters: atomics updated by the committer and the
//! compaction task, read lock-free by [`super::LiveIngest::stats`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Counters of live ingest so far (for `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LiveStats {
    /// Requests accepted into the queue.
    pub requests_received: u64,
    /// Requests acknowledged (their events durably in the raw table).
    pub requests_acknowledged: u64,
    /// Requests answered with an error because their group's commit failed.
    pub requests_failed: u64,
    /// Requests waiting in the queue right now.
    pub requests_queued: usize,
    /// Events of the acknowledged requests.
    pub events_acknowledged: u64,
    /// Groups of requests merged (one MERGE each, whether or not it committed).
    pub groups: u64,
    /// Delta commits made by live ingest (a group with nothing new makes none).
    pub commits: u64,
    /// Raw rows inserted.
    pub rows_inserted: u64,
    /// Acknowledged events that added no row: already in the table, or
    /// repeated within their group.
    pub duplicates: u64,
    /// MERGEs re-run after losing a commit race.
    pub conflicts_retried: u64,
    /// Raw table files the live MERGEs scanned for matches.
    pub target_files_scanned: u64,
    /// Raw table files the live MERGEs skipped thanks to partition pruning.
    pub target_files_skipped: u64,
    /// Compactions that finished (whether or not there was anything to do).
    pub compactions: u64,
    /// Compactions that failed (their dates are tried again next time).
    pub compaction_failures: u64,
    /// Small files compaction replaced.
    pub files_compacted: u64,
    /// Files compaction wrote in their place.
    pub files_written_by_compaction: u64,
    /// The raw version of the last live commit (or the version found at
    /// start); `None` for a table without any version yet.
    pub last_raw_version: Option<i64>,
    /// Seconds the last group took from MERGE to durable commit.
    pub last_commit_seconds: f64,
    /// Times the committer was started again after dying.
    pub committer_restarts: u64,
    /// With a write-ahead log: the sequence of the last record synced
    /// (acknowledged); 0 before the first.
    pub wal_sequence: u64,
    /// With a write-ahead log: every record up to this sequence is in the
    /// raw table.
    pub folded_sequence: u64,
    /// With a write-ahead log: records found in it at start that the raw
    /// table did not hold yet, folded before any new request.
    pub wal_records_replayed: u64,
    /// Folds of logged records into the raw table that failed and were
    /// tried again (the records stay in the log meanwhile).
    pub fold_failures: u64,
}

/// The shared atomics behind [`LiveStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) requests_received: AtomicU64,
    pub(super) requests_acknowledged: AtomicU64,
    pub(super) requests_failed: AtomicU64,
    pub(super) events_acknowledged: AtomicU64,
    pub(super) groups: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) rows_inserted: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) conflicts_retried: AtomicU64,
    pub(super) target_files_scanned: AtomicU64,
    pub(super) target_files_skipped: AtomicU64,
    pub(super) compactions: AtomicU64,
    pub(super) compaction_failures: AtomicU64,
    pub(super) files_compacted: AtomicU64,
    pub(super) files_written_by_compaction: AtomicU64,
    /// -1: none.
    pub(super) last_raw_version: AtomicI64,
    pub(super) last_commit_micros: AtomicU64,
    pub(super) wal_sequence: AtomicU64,
    pub(super) folded_sequence: AtomicU64,
    pub(super) wal_records_replayed: AtomicU64,
    pub(super) fold_failures: AtomicU64,
}

impl Counters {
    pub(super) fn new(version: Option<i64>) -> Self {
        Self { last_raw_version: AtomicI64::new(version.unwrap_or(-1)), ..Self::default() }
    }

    pub(super) fn request_received(&self) {
        self.requests_received.fetch_add(1, Relaxed);
    }

    pub(super) fn add(counter: &AtomicU64, value: impl TryInto<u64>) {
        counter.fetch_add(value.try_into().unwrap_or(u64::MAX), Relaxed);
    }

    pub(super) fn snapshot(&self, requests_queued: usize) -> LiveStats {
        let last_raw_version = self.last_raw_version.load(Relaxed);
        LiveStats {
            requests_received: self.requests_received.load(Relaxed),
            requests_acknowledged: self.requests_acknowledged.load(Relaxed),
            requests_failed: self.requests_failed.load(Relaxed),
            requests_queued,
            events_acknowledged: self.events_acknowledged.load(Relaxed),
            groups: self.groups.load(Relaxed),
            commits: self.commits.load(Relaxed),
            rows_inserted: self.rows_inserted.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            conflicts_retried: self.conflicts_retried.load(Relaxed),
            target_files_scanned: self.target_files_scanned.load(Relaxed),
            target_files_skipped: self.target_files_skipped.load(Relaxed),
            compactions: self.compactions.load(Relaxed),
            compaction_failures: self.compaction_failures.load(Relaxed),
            files_compacted: self.files_compacted.load(Relaxed),
            files_written_by_compaction: self.files_written_by_compaction.load(Relaxed),
            last_raw_version: (last_raw_version >= 0).then_some(last_raw_version),
            last_commit_seconds: self.last_commit_micros.load(Relaxed) as f64 / 1e6,
            // Kept by the supervisor; filled in by `LiveIngest::stats`.
            committer_restarts: 0,
            wal_sequence: self.wal_sequence.load(Relaxed),
            folded_sequence: self.folded_sequence.load(Relaxed),
            wal_records_replayed: self.wal_records_replayed.load(Relaxed),
            fold_failures: self.fold_failures.load(Relaxed),
        }
    }
}
