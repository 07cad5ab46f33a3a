//! The sessions zone (gold): new raw-table versions → one row per session
//! in `uc_delta_session_events`.
//!
//! Each micro-batch is a range of raw versions read from the raw table's
//! change data feed (inserts only), grouped by session, and upserted into
//! the gold table in one commit (`upsert`: a MERGE in Delta's log, in a
//! file layout that keeps rewrites small). The raw version applied is
//! recorded as a Delta application transaction (app id
//! [`SESSIONS_APP_ID`]) in the same commit, so a crash between "merged"
//! and "remembered" cannot exist.
//!
//! Order never matters: gold is a function of the set of raw events. A
//! session's start_ts is its earliest start and end_ts its latest end; its
//! country and player are those of that start (ties on ts broken by the
//! smallest player, then country; with no start, the player of the latest
//! end, ties broken by the smallest player). Each of these is a minimum or
//! maximum, so folding the events in any grouping — one micro-batch or many,
//! in any order, a batch applied twice after a crash or by two processes —
//! gives the same row. One rule ([`SessionUpdate`]) folds a micro-batch's
//! events and combines the result with the stored row.
//!
//! Pruning never misses a match: before the upsert, the partitions that
//! already hold any of the batch's sessions are looked up in an exact
//! session → date index of gold (`index`: kept current from gold's change
//! feed, persisted as a snapshot in gold's folder), and the upsert reads
//! only those. The lookup costs what the micro-batch holds, not what gold
//! holds.
//!
//! Two processes may run the stage at once (two `run`s, `run` beside `up`):
//! an upsert that loses the commit race reloads the table and, unless the
//! other process already applied its raw versions, runs again (the fold
//! being idempotent, applying a version twice changes nothing).

mod aggregate;
mod feed;
mod index;
mod range;
mod upsert;

use std::time::Instant;

use deltalake::DeltaTable;
use sessionlake_model::crash::{self, StopAfter};
use sessionlake_model::tables::{SESSIONS_APP_ID, raw};
use tracing::{info, warn};

use crate::commit_retry::back_off_after_conflict;
use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::rebuild::RawSnapshot;
use crate::schema::{RAW, SESSIONS};
use crate::{progress, query, txn};

pub use aggregate::{SessionBatch, SessionUpdate};
pub use feed::{SessionChange, SessionFeed, SessionImage};
use index::RunIndex;
pub use index::{INDEX_SNAPSHOT_DIR, SessionIndex};

/// The sessions stage's inputs.
#[derive(Debug, Clone)]
pub struct SessionsStage {
    /// The lake.
    pub lake: Lake,
    /// Most raw versions folded into one gold MERGE.
    pub max_versions_per_batch: u64,
    /// Most raw rows one gold MERGE takes: a micro-batch's versions are
    /// counted from their commit entries before any row is read, so memory
    /// stays bounded however the versions were written (a single version
    /// larger than this is a micro-batch of its own).
    pub max_rows_per_batch: u64,
    /// Stop after this many merged micro-batches (tests use it to simulate
    /// a crash right after a commit; only with the `crash-points` feature);
    /// [`StopAfter::NEVER`] runs until caught up.
    pub max_batches: StopAfter,
    /// Show progress bars.
    pub show_progress: bool,
}

/// What a sessions run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SessionsReport {
    /// Raw rows read from the change feed.
    pub raw_rows: u64,
    /// Micro-batches merged (a range of raw versions without a row needs
    /// no MERGE and is not counted).
    pub batches: u64,
    /// Gold rows inserted.
    pub inserted: u64,
    /// Gold rows updated (a start or end filled in).
    pub updated: u64,
    /// Raw version applied before this run (`None`: nothing applied yet).
    pub from_version: Option<i64>,
    /// Raw version applied after this run.
    pub to_version: Option<i64>,
    /// Whether the raw history this run needed was gone (vacuumed or
    /// cleaned past it), so it folded the whole raw table again.
    pub rebuilt_from_snapshot: bool,
    /// Wall time.
    pub seconds: f64,
}

impl SessionsStage {
    /// Applies every raw version newer than the last one applied, then stops.
    pub async fn run(&self) -> Result<SessionsReport> {
        let started = Instant::now();
        let mut report = SessionsReport::default();
        let Some(raw_table) = self.lake.open(&RAW).await? else {
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        };
        let mut gold = self.lake.open_or_create(&SESSIONS).await?;
        let applied = txn::applied_version(&gold, SESSIONS.name, SESSIONS_APP_ID).await?;
        report.from_version = applied;
        report.to_version = applied;
        let mut latest = raw_table.version().unwrap_or(0);
        let first = applied.map_or(0, |version| version as u64 + 1);
        if first > latest {
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        let max_step = self.max_versions_per_batch.max(1);
        let bar = progress::steps_bar(latest - first + 1, "sessions", self.show_progress);
        // Where gold files each session: opened on the first MERGE.
        let mut index = RunIndex::new(self.lake.clone());
        let mut from = first;
        let mut next: Option<Prefetched> = None;
        while from <= latest {
            if self.max_batches.is_reached(report.batches) {
                break;
            }
            let (to, read) = match next.take() {
                Some(prefetched) if prefetched.from == from => (prefetched.to, prefetched.read.await),
                stale => {
                    if let Some(stale) = stale {
                        // Another process applied those versions, or the
                        // history was folded from a snapshot instead.
                        stale.read.abort();
                    }
                    let to = range::range_end(&raw_table, from, latest, self.max_rows_per_batch, max_step).await?;
                    (to, Ok(read_changes(&raw_table, from, to).await))
                }
            };
            bar.set_message(format!("raw versions {from}..={to}"));
            let read = read.map_err(|error| LakeError::Unexpected {
                table: RAW.name,
                message: format!("reading raw versions {from}..={to} failed: {error}"),
            })?;
            let batch = match read {
                Ok(batch) => batch,
                Err(LakeError::HistoryGone { version, missing, .. }) => {
                    // The raw history from `from` on was vacuumed or cleaned
                    // past this stage: fold the whole raw table again
                    // instead, never skip those versions.
                    warn!(from, version, %missing, "the raw history this stage needs is gone: folding the whole raw table again");
                    let (table, rebuilt) = self.fold_raw_snapshot(gold, &mut index, &mut report).await?;
                    gold = table;
                    latest = latest.max(rebuilt);
                    bar.inc(rebuilt.saturating_sub(from) + 1);
                    from = rebuilt + 1;
                    continue;
                }
                Err(error) => return Err(error),
            };
            report.raw_rows += batch.rows;
            // Read the next range while this one merges: the read is on
            // the other core, so a micro-batch costs the slower of the two.
            if to < latest && !self.max_batches.is_reached(report.batches + 1) {
                let next_to = range::range_end(&raw_table, to + 1, latest, self.max_rows_per_batch, max_step).await?;
                let raw_table = raw_table.clone();
                let read = tokio::spawn(async move { read_changes(&raw_table, to + 1, next_to).await });
                next = Some(Prefetched { from: to + 1, to: next_to, read });
            }
            if !batch.sessions.is_empty() {
                match merge_retrying(gold, &batch, Some(to as i64), &mut index).await? {
                    Merged::Applied { table, inserted, updated } => {
                        gold = table;
                        crash::point(crash::SESSIONS_AFTER_MERGE);
                        report.inserted += inserted;
                        report.updated += updated;
                        report.to_version = Some(to as i64);
                        report.batches += 1;
                    }
                    Merged::AppliedElsewhere { table, applied } => {
                        // Another process got there first, up to `applied`.
                        gold = table;
                        report.to_version = Some(applied);
                        bar.inc((applied as u64).min(latest) + 1 - from);
                        from = applied as u64 + 1;
                        continue;
                    }
                }
            }
            bar.inc(to - from + 1);
            from = to + 1;
        }
        bar.finish_and_clear();
        // The data is committed: a snapshot that cannot be written only
        // means a longer catch-up (or a scan) next time.
        if let Err(error) = index.save_if_due(&gold).await {
            warn!(error = %error, "could not save the sessions index snapshot");
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

impl SessionsStage {
    /// Folds every row of the raw table (as of now) into gold again, one
    /// date partition per MERGE, and records the snapshot's version on the
    /// last MERGE only: a crash before it leaves the old mark, so the next
    /// run finds the gap and folds again. Folding an event twice changes
    /// nothing, so gold ends as the fold of the whole raw table. Returns
    /// gold and the raw version now applied.
    async fn fold_raw_snapshot(
        &self,
        mut gold: DeltaTable,
        index: &mut RunIndex,
        report: &mut SessionsReport,
    ) -> Result<(DeltaTable, u64)> {
        let snapshot = RawSnapshot::open(&self.lake).await?.ok_or_else(|| LakeError::Unexpected {
            table: RAW.name,
            message: "the raw table disappeared while its history was read".into(),
        })?;
        let version = snapshot.version();
        let days = snapshot.days().to_vec();
        for (position, &day) in days.iter().enumerate() {
            let mut batch = SessionBatch::default();
            for rows in snapshot.read_day(day).await? {
                batch.add_raw_rows(&rows)?;
            }
            report.raw_rows += batch.rows;
            let mark = (position + 1 == days.len()).then_some(version);
            match merge_retrying(gold, &batch, mark, index).await? {
                Merged::Applied { table, inserted, updated } => {
                    gold = table;
                    report.inserted += inserted;
                    report.updated += updated;
                    report.batches += 1;
                }
                Merged::AppliedElsewhere { table, applied } => {
                    // Another process folded up to `applied` (only the last
                    // MERGE carries a mark): this snapshot is done.
                    report.to_version = Some(applied);
                    return Ok((table, applied.max(0) as u64));
                }
            }
        }
        report.rebuilt_from_snapshot = true;
        report.to_version = Some(version);
        Ok((gold, version.max(0) as u64))
    }
}

/// A micro-batch read ahead: raw versions `from..=to`, being read.
struct Prefetched {
    from: u64,
    to: u64,
    read: tokio::task::JoinHandle<Result<SessionBatch>>,
}

/// Reads the rows inserted into the raw table by versions `from..=to`.
async fn read_changes(raw_table: &DeltaTable, from: u64, to: u64) -> Result<SessionBatch> {
    let sql = format!(
        "SELECT {event}, {session}, {player}, {country}, {ts} FROM changes WHERE _change_type = 'insert'",
        event = raw::EVENT,
        session = raw::SESSION_ID,
        player = raw::PLAYER_ID,
        country = raw::COUNTRY,
        ts = raw::TS,
    );
    let batches = query::changes(raw_table, RAW.name, from, to, &sql).await?;
    let mut sessions = SessionBatch::default();
    for batch in &batches {
        sessions.add_raw_rows(batch)?;
    }
    Ok(sessions)
}

/// How many times a sessions MERGE is re-run after losing a commit race.
const MERGE_CONFLICT_RETRIES: u32 = 30;

/// What [`merge_retrying`] did.
enum Merged {
    /// This process committed the micro-batch.
    Applied {
        /// The table at the commit.
        table: DeltaTable,
        /// Gold rows inserted.
        inserted: u64,
        /// Gold rows updated.
        updated: u64,
    },
    /// Another process committed these raw versions (and maybe more) first.
    AppliedElsewhere {
        /// The reloaded table.
        table: DeltaTable,
        /// The raw version now applied.
        applied: i64,
    },
}

/// MERGEs one micro-batch, recording `raw_version` (if any) in the same
/// commit; a lost commit race reloads the table and tries again, unless the
/// reloaded table shows `raw_version` applied by another process.
async fn merge_retrying(
    mut gold: DeltaTable,
    batch: &SessionBatch,
    raw_version: Option<i64>,
    index: &mut RunIndex,
) -> Result<Merged> {
    let mut conflicts_retried = 0;
    loop {
        // Looked up again on every attempt: the writer that won the race
        // may have filed some of these sessions under other dates (the
        // index reads its commits from gold's change feed).
        let started = Instant::now();
        let filters = index.filters();
        let stored = index.current(&gold).await?;
        let index_ms = started.elapsed().as_millis() as u64;
        match upsert::upsert(&gold, batch, stored, &filters, raw_version).await {
            Ok(done) => {
                if let Some(version) = done.version {
                    index.record_own_commit(version, &done.filed.0, &done.filed.1);
                }
                info!(
                    raw_version,
                    sessions = batch.sessions.len(),
                    inserted = done.inserted,
                    updated = done.updated,
                    copied = done.copied,
                    files_read = done.files_read,
                    files_rewritten = done.files_rewritten,
                    partitions = done.dates,
                    index_ms,
                    phase_ms = ?done.phase_ms,
                    ms = started.elapsed().as_millis() as u64,
                    "merged sessions micro-batch"
                );
                return Ok(Merged::Applied { table: done.table, inserted: done.inserted, updated: done.updated });
            }
            Err(error) => {
                back_off_after_conflict(error, &mut conflicts_retried, MERGE_CONFLICT_RETRIES, "a sessions merge")
                    .await
                    .map_err(LakeError::delta(SESSIONS.name))?;
                gold.update_state().await.map_err(LakeError::delta(SESSIONS.name))?;
                let applied = txn::applied_version(&gold, SESSIONS.name, SESSIONS_APP_ID).await?;
                if let Some(applied) = applied.filter(|&applied| raw_version.is_some_and(|wanted| applied >= wanted)) {
                    return Ok(Merged::AppliedElsewhere { table: gold, applied });
                }
            }
        }
    }
}
