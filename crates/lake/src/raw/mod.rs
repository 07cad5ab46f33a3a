//! The raw zone (silver): landed files → `r_session_events` (one row per
//! distinct valid event) and `r_session_events_rejected` (every other line,
//! with its reason).
//!
//! Per landed file: stream it in chunks of consecutive lines bounded by
//! [`ChunkLimits`] ([`read`]), so memory is bounded whatever the file's
//! size; per chunk, append its rejected lines in one commit, then MERGE its
//! valid events — every event date of the chunk in one commit, so a file's
//! cost follows its lines, not its calendar — inserting only rows whose
//! UNIQUE_ID_ROW is not in their date's partition yet. UNIQUE_ID_ROW holds
//! every field of the event ([`Event::unique_id_row`]): an exact repeat is a
//! duplicate, and every distinct event is kept — also a conflicting repeat
//! (same kind and session, another ts) — so the table is the set of
//! distinct valid events of every landed line, whatever the files, their
//! order, the chunk sizes or the batches. Progress markers (Delta
//! application transactions) ride in the same commits:
//!
//! - `sessionlake-raw-lines/<sha256>` = N — the file's lines 1..=N are
//!   merged (their valid events are in the table);
//! - `sessionlake-raw-done/<sha256>` — the whole file is (on its last
//!   MERGE, or in a commit of its own when there is nothing to insert);
//! - `sessionlake-rejected-lines/<sha256>` = N — the rejected lines among
//!   lines 1..=N are written (`sessionlake-rejected/<sha256>`, from before
//!   chunks, means all of them).
//!
//! So a crash at any point resumes at the first line not merged — with
//! other chunk limits too, as markers count lines — and a re-run of a
//! processed file reads nothing and commits nothing. A file's rejected
//! lines are committed before its valid events of the same chunk, so every
//! rejected line up to the merged mark is written. Debug runs merge a slice
//! of dates and record no raw marker; the MERGE being insert-only, a later
//! full run merges those dates again without duplicating anything.
//!
//! A file that does not decompress is [`quarantine`]d (a marker in the raw
//! table, its reason as a row of the rejected table) and the run goes on
//! with the other files: later runs skip it and list it with its reason
//! until the user retries or drops it (`sessionlake quarantine`). A file
//! of one chunk is read whole before its first commit, so nothing of it is
//! written; of a larger file, the chunks before the damage are (their lines
//! are intact), and a retry resumes after them.
//!
//! [`live`] writes the same table from `POST /events`, many requests per
//! commit, with the same identity (EVENT_DATE + UNIQUE_ID_ROW). Both re-run
//! a MERGE that loses a commit race (`merge`), so they can run
//! at the same time.

mod batch;
pub mod live;
mod merge;
pub mod quarantine;
pub mod read;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use deltalake::kernel::transaction::CommitBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use sessionlake_model::time::date_of_day;
use sessionlake_model::{Event, RejectReason, crash};
use tracing::info;

use crate::commit_retry::back_off_after_conflict;
use crate::error::{LakeError, Result};
use crate::keys::FilterCache;
use crate::lake::Lake;
use crate::landing::{self, Manifest, ManifestEntry};
use crate::schema::{RAW, REJECTED};
use crate::{progress, txn};

pub use batch::raw_batch;
pub use live::{Appended, Durable, LiveIngest, LiveReport, LiveSettings, LiveStats, WalSettings};
pub(crate) use merge::{FILTER_CACHE_BYTES, distinct_events, merge_new_rows, writer_properties};
pub use quarantine::{CORRUPT_FILE, Quarantine, QuarantineChange, QuarantinedFile};
pub use read::ChunkLimits;

/// Event dates processed in debug mode (1-based positions among a file's
/// sorted dates), like the reference's debug flag.
pub const DEBUG_DATES: std::ops::RangeInclusive<usize> = 5..=7;

/// The raw stage's inputs.
#[derive(Debug, Clone)]
pub struct RawStage {
    /// The lake.
    pub lake: Lake,
    /// Only merge event dates [`DEBUG_DATES`] of each file.
    pub debug: bool,
    /// How many lines of a file are read and merged at once.
    pub chunk_limits: ChunkLimits,
    /// Show progress bars.
    pub show_progress: bool,
}

/// What a raw run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RawReport {
    /// Landed files read in this run.
    pub files_processed: u64,
    /// Landed files already fully processed earlier, or dropped from the
    /// quarantine (not read).
    pub files_skipped: u64,
    /// Landed files quarantined now (not read): this run's and earlier
    /// runs' that are neither retried nor dropped yet.
    pub files_quarantined: u64,
    /// Those files, in landing order, each with its reason.
    pub quarantined: Vec<QuarantinedFile>,
    /// Files this run quarantined (also in `files_quarantined`): each added
    /// one `corrupt_file` row to the rejected table.
    pub newly_quarantined: u64,
    /// Lines read.
    pub lines: u64,
    /// Rows inserted into the raw table.
    pub inserted: u64,
    /// Valid events not inserted because they were already there.
    pub duplicates: u64,
    /// Rows appended to the rejected table.
    pub rejected: u64,
    /// Rejected rows per reason code.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Chunks whose valid events were merged (one MERGE each).
    pub chunks_merged: u64,
    /// Event dates merged, counted once per chunk.
    pub dates_merged: u64,
    /// Event dates of the files read left out (debug runs: outside the
    /// debug slice).
    pub dates_skipped: u64,
    /// Lines not read again because an earlier run merged them.
    pub lines_resumed: u64,
    /// Wall time.
    pub seconds: f64,
}

impl RawStage {
    /// Processes every landed file not processed yet.
    pub async fn run(&self) -> Result<RawReport> {
        let started = Instant::now();
        let mut report = RawReport::default();
        let entries = Manifest::of(&self.lake)?.entries().await?;
        let mut raw_table = self.lake.open_or_create(&RAW).await?;
        let mut rejected_table = self.lake.open_or_create(&REJECTED).await?;
        let filters = FilterCache::new(FILTER_CACHE_BYTES);
        let mut quarantined = Vec::new();
        for entry in &entries {
            let markers = FileMarkers::of(entry);
            if txn::applied_version(&raw_table, RAW.name, &markers.done).await?.is_some() {
                report.files_skipped += 1;
                continue;
            }
            if quarantine::is_quarantined_in(&raw_table, entry).await? {
                quarantined.push(entry.clone());
                continue;
            }
            match self.process_file(entry, &markers, raw_table, rejected_table, &filters, &mut report).await {
                Ok(tables) => {
                    (raw_table, rejected_table) = tables;
                    report.files_processed += 1;
                }
                // A file that does not decompress is quarantined and the
                // run goes on: one bad file must not fail every later run.
                // Nothing of it was written (a file is read whole before
                // its first commit).
                Err(LakeError::Corrupt { message, .. }) => {
                    raw_table = self.lake.open_or_create(&RAW).await?;
                    rejected_table = self.lake.open_or_create(&REJECTED).await?;
                    let row_written;
                    (raw_table, rejected_table, row_written) =
                        quarantine::quarantine_file(raw_table, rejected_table, entry, &message).await?;
                    quarantined.push(entry.clone());
                    report.newly_quarantined += u64::from(row_written);
                }
                Err(error) => return Err(error),
            }
        }
        report.quarantined = quarantine::with_reasons(&self.lake, &quarantined).await?;
        report.files_quarantined = report.quarantined.len() as u64;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    async fn process_file(
        &self,
        entry: &ManifestEntry,
        markers: &FileMarkers,
        mut raw_table: DeltaTable,
        mut rejected_table: DeltaTable,
        filters: &FilterCache,
        report: &mut RawReport,
    ) -> Result<(DeltaTable, DeltaTable)> {
        // Checked against the manifest's sha256 (downloaded first from an
        // object store); other bytes are quarantined by the caller.
        let copy = landing::local_copy(&self.lake, entry).await?;
        let lines_merged = applied(&raw_table, RAW.name, &markers.lines).await?;
        let rejected_written =
            match txn::applied_version(&rejected_table, REJECTED.name, &markers.legacy_rejected).await? {
                Some(_) => u64::MAX,
                None => applied(&rejected_table, REJECTED.name, &markers.rejected).await?,
            };
        report.lines_resumed += lines_merged;
        let debug_days = match self.debug {
            true => Some(self.debug_days(copy.path()).await?),
            false => None,
        };

        let bar = progress::bytes_bar(Some(entry.size), "raw", self.show_progress);
        let reader_bar = bar.clone();
        let path = copy.path().to_path_buf();
        let limits = self.chunk_limits;
        // One chunk waits in the channel while the previous one is merged.
        let (sender, mut chunks) = tokio::sync::mpsc::channel::<read::Chunk>(1);
        let reader = tokio::task::spawn_blocking(move || {
            read::read_chunks(
                &path,
                lines_merged,
                limits,
                move |n| reader_bar.set_position(n),
                |chunk| sender.blocking_send(chunk).is_ok(),
            )
        });
        let mut done_committed = false;
        while let Some(mut chunk) = chunks.recv().await {
            bar.set_message(format!("lines {}..={}", chunk.first_line, chunk.last_line));
            info!(file = %entry.file, first_line = chunk.first_line, last_line = chunk.last_line, valid = chunk.valid_events(), rejected = chunk.rejected.len(), dates = chunk.days.len(), "parsed chunk");
            report.lines += chunk.lines();
            rejected_table = self.write_rejected(entry, &chunk, rejected_written, rejected_table, report).await?;
            crash::point(crash::RAW_AFTER_REJECTED_COMMIT);

            if let Some(selected) = &debug_days {
                let before = chunk.days.len();
                chunk.days.retain(|day, _| selected.contains(day));
                report.dates_skipped += (before - chunk.days.len()) as u64;
            }
            let mut commit_markers = Vec::new();
            if !self.debug {
                commit_markers.push((markers.lines.clone(), chunk.last_line as i64));
                if chunk.is_last {
                    commit_markers.push((markers.done.clone(), 1));
                }
            }
            if !chunk.days.is_empty() {
                let valid = chunk.valid_events();
                let (table, inserted) = merge_chunk(raw_table, &chunk.days, commit_markers, filters).await?;
                raw_table = table;
                // An insert-only MERGE commits (with its markers) iff it inserts.
                done_committed |= !self.debug && chunk.is_last && inserted > 0;
                crash::point(crash::RAW_AFTER_CHUNK_MERGE);
                report.inserted += inserted;
                report.duplicates += valid - inserted;
                report.chunks_merged += 1;
                report.dates_merged += chunk.days.len() as u64;
            }
            if chunk.is_last && !self.debug && !done_committed {
                // The done marker rides on the last chunk's MERGE, but a
                // MERGE that inserts nothing (every event already there)
                // makes no commit, and a last chunk without a valid event
                // has no MERGE: without a commit of its own for the
                // markers, such a file is read again by every later run.
                let markers = vec![(markers.lines.clone(), chunk.last_line as i64), (markers.done.clone(), 1)];
                raw_table = commit_markers_only(raw_table, markers).await?;
            }
        }
        let summary = reader.await.map_err(|join| LakeError::Unexpected {
            table: RAW.name,
            message: format!("reader task failed: {join}"),
        })??;
        bar.finish_and_clear();
        drop(copy);
        info!(file = %entry.file, lines = summary.lines, resumed_after = lines_merged, bytes = summary.bytes, "refined landed file");
        Ok((raw_table, rejected_table))
    }

    /// The event days a debug run merges: [`DEBUG_DATES`] among the file's
    /// sorted dates (a first pass over the file, keeping only its dates).
    async fn debug_days(&self, path: &std::path::Path) -> Result<BTreeSet<i32>> {
        let path = path.to_path_buf();
        let limits = self.chunk_limits;
        let days = tokio::task::spawn_blocking(move || {
            let mut days = BTreeSet::new();
            read::read_chunks(
                &path,
                0,
                limits,
                |_| {},
                |chunk| {
                    days.extend(chunk.days.keys().copied());
                    true
                },
            )
            .map(|_| days)
        })
        .await
        .map_err(|join| LakeError::Unexpected { table: RAW.name, message: format!("reader task failed: {join}") })??;
        Ok(days
            .into_iter()
            .enumerate()
            .filter(|(index, _)| DEBUG_DATES.contains(&(index + 1)))
            .map(|(_, day)| day)
            .collect())
    }

    /// Appends the chunk's rejected lines after line `written` (those before
    /// are in the table), with the chunk's mark in the same commit.
    async fn write_rejected(
        &self,
        entry: &ManifestEntry,
        chunk: &read::Chunk,
        written: u64,
        rejected_table: DeltaTable,
        report: &mut RawReport,
    ) -> Result<DeltaTable> {
        let marker = FileMarkers::of(entry).rejected;
        let lines: Vec<read::RejectedLine> =
            chunk.rejected.iter().filter(|line| line.line_number > written).cloned().collect();
        if lines.is_empty() {
            return Ok(rejected_table);
        }
        let batch = batch::rejected_batch(&lines, &entry.file, chrono::Utc::now())?;
        let mark = chunk.last_line as i64;
        let (table, written) = commit_unless_reached(rejected_table, REJECTED.name, &marker, mark, |table| {
            table
                .write(vec![batch.clone()])
                .with_commit_properties(txn::commit_with([(marker.clone(), mark)]))
                .into_future()
        })
        .await?;
        if !written {
            return Ok(table);
        }
        report.rejected += lines.len() as u64;
        for line in &lines {
            *report.rejected_by_reason.entry(line.rejection.reason.code().to_string()).or_insert(0) += 1;
        }
        Ok(table)
    }
}

/// The mark recorded under `app_id`, 0 when none.
async fn applied(table: &DeltaTable, table_name: &'static str, app_id: &str) -> Result<u64> {
    Ok(txn::applied_version(table, table_name, app_id).await?.map_or(0, |mark| mark.max(0) as u64))
}

/// The application-transaction ids that record a file's progress.
struct FileMarkers {
    /// In the raw table: the last line whose valid events are merged.
    lines: String,
    /// In the raw table: the file is finished.
    done: String,
    /// In the rejected table: the last line whose rejected lines (up to it)
    /// are written.
    rejected: String,
    /// In the rejected table, from before chunks: all rejected lines are.
    legacy_rejected: String,
}

impl FileMarkers {
    fn of(entry: &ManifestEntry) -> Self {
        Self {
            lines: format!("sessionlake-raw-lines/{}", entry.sha256),
            done: format!("sessionlake-raw-done/{}", entry.sha256),
            rejected: format!("sessionlake-rejected-lines/{}", entry.sha256),
            legacy_rejected: format!("sessionlake-rejected/{}", entry.sha256),
        }
    }
}

/// Commits `markers` to the raw table with no data (an append of nothing),
/// unless the last of them (the done marker) is already there.
async fn commit_markers_only(table: DeltaTable, markers: Vec<(String, i64)>) -> Result<DeltaTable> {
    let done = markers.last().map(|(app_id, _)| app_id.clone()).unwrap_or_default();
    commit_markers_unless_reached(table, markers, &done, 1).await
}

/// Commits `markers` to the raw table with no data (an append of nothing),
/// unless `guard` is already recorded there at `at_least` or more.
async fn commit_markers_unless_reached(
    table: DeltaTable,
    markers: Vec<(String, i64)>,
    guard: &str,
    at_least: i64,
) -> Result<DeltaTable> {
    let (table, _) = commit_unless_reached(table, RAW.name, guard, at_least, |mut table| {
        let markers = markers.clone();
        async move {
            let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
            CommitBuilder::from(txn::commit_with(markers))
                .build(Some(table.snapshot()?), table.log_store(), operation)
                .await?;
            table.update_state().await?;
            Ok(table)
        }
    })
    .await?;
    Ok(table)
}

/// Runs `commit` on `table` unless `marker` is already recorded there at
/// `at_least` or more, and says whether it committed. Another `raw` run of
/// the same file may commit the same marker first: Delta fails the later
/// commit (the marker conflicts), and the reloaded table then has the
/// marker. Found by the torture suite's two concurrent raw runs.
async fn commit_unless_reached<Commit, Committed>(
    mut table: DeltaTable,
    table_name: &'static str,
    marker: &str,
    at_least: i64,
    mut commit: Commit,
) -> Result<(DeltaTable, bool)>
where
    Commit: FnMut(DeltaTable) -> Committed,
    Committed: std::future::Future<Output = std::result::Result<DeltaTable, DeltaTableError>>,
{
    let mut attempt = 0;
    loop {
        if txn::applied_version(&table, table_name, marker).await?.is_some_and(|version| version >= at_least) {
            return Ok((table, false));
        }
        match commit(table.clone()).await {
            Ok(committed) => return Ok((committed, true)),
            Err(error) => {
                let what = format!("the commit of {marker} to {table_name}");
                back_off_after_conflict(error, &mut attempt, MERGE_CONFLICT_RETRIES, &what)
                    .await
                    .map_err(LakeError::delta(table_name))?;
                table.update_state().await.map_err(LakeError::delta(table_name))?;
            }
        }
    }
}

/// How many times a raw MERGE is re-run after losing a commit race to
/// another writer (live ingest, a compaction, another raw run). A date's
/// MERGE takes far longer than a live commit, so under a steady stream of
/// posted events on the same dates it can lose many races in a row: 10 was
/// too few under CI load (found by `.ci/run`); with the jittered backoff,
/// 30 attempts give a writer committing every 100 ms about half a minute.
const MERGE_CONFLICT_RETRIES: u32 = 30;

/// MERGEs a chunk's events (every date of it in one commit), inserting
/// those not in their date's partition yet. Returns the new table and the
/// rows inserted.
async fn merge_chunk(
    table: DeltaTable,
    days: &BTreeMap<i32, Vec<Event>>,
    markers: Vec<(String, i64)>,
    filters: &FilterCache,
) -> Result<(DeltaTable, u64)> {
    let events: Vec<Event> = days.values().flatten().copied().collect();
    let distinct = distinct_events(&events);
    drop(events);
    let batch = raw_batch(&distinct, chrono::Utc::now())?;
    drop(distinct);
    // An event's date is a function of its identity (its ts is part of
    // UNIQUE_ID_ROW), so an exact repeat is always in one of these partitions.
    let dates: BTreeSet<i32> = days.keys().copied().collect();
    let merged = merge_new_rows(table, batch, &dates, markers, MERGE_CONFLICT_RETRIES, filters).await?;
    info!(
        first_date = %date_of_day(*days.keys().next().expect("a date")),
        dates = days.len(),
        inserted = merged.inserted,
        files_scanned = merged.files_scanned,
        files_skipped = merged.files_skipped,
        row_groups_read = merged.row_groups_read,
        conflicts_retried = merged.conflicts_retried,
        ms = merged.elapsed.as_millis() as u64,
        phase_ms = ?merged.phase_ms,
        "merged raw chunk"
    );
    Ok((merged.table, merged.inserted))
}

/// Reason codes as report keys.
pub fn reason_counts(counts: &BTreeMap<RejectReason, u64>) -> BTreeMap<String, u64> {
    counts.iter().map(|(reason, count)| (reason.code().to_string(), *count)).collect()
}
