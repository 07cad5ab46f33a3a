//! The raw zone (silver): landed files → `r_session_events` (one row per
//! distinct valid event) and `r_session_events_rejected` (every other line,
//! with its reason).
//!
//! Per landed file: read and parse it once ([`read`]), append its rejected
//! lines in one commit, then MERGE its valid events one micro-batch per
//! event date, in date order, inserting only rows whose UNIQUE_ID_ROW is not
//! in that date's partition yet. UNIQUE_ID_ROW holds every field of the
//! event ([`Event::unique_id_row`]): an exact repeat is a duplicate, and
//! every distinct event is kept — also a conflicting repeat (same kind and
//! session, another ts) — so the table is the set of distinct valid events
//! of every landed line, whatever the files, their order or the batches. Progress markers (Delta application
//! transactions) ride in the same commits:
//!
//! - `sessionlake-raw/<sha256>` = N — the file's first N dates (in date
//!   order) are merged;
//! - `sessionlake-raw-done/<sha256>` — the whole file is (on its last
//!   MERGE, or in a commit of its own when there is nothing to insert);
//! - `sessionlake-rejected/<sha256>` — its rejected lines are written.
//!
//! So a crash at any point resumes where it stopped, and a re-run of a
//! processed file reads nothing and commits nothing. (Two markers per file,
//! not one per date: each lookup replays the Delta log.) Debug runs merge a
//! slice of dates and record no marker; the MERGE being insert-only, a later
//! full run merges those dates again without duplicating anything.
//!
//! A file that does not decompress is [`quarantine`]d (a marker in the raw
//! table, its reason as a row of the rejected table) and the run goes on
//! with the other files: later runs skip it and list it with its reason
//! until the user retries or drops it (`sessionlake quarantine`).
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

use std::collections::BTreeMap;
use std::time::Instant;

use deltalake::datafusion::prelude::lit;
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use sessionlake_model::tables::raw as columns;
use sessionlake_model::time::date_of_day;
use sessionlake_model::{Event, RejectReason, crash};
use tracing::info;

use crate::commit_retry::back_off_after_conflict;
use crate::error::{LakeError, Result};
use crate::expr::target;
use crate::lake::Lake;
use crate::landing::{self, Manifest, ManifestEntry};
use crate::schema::{RAW, REJECTED};
use crate::{progress, txn};

pub use batch::raw_batch;
pub use live::{Appended, LiveIngest, LiveReport, LiveSettings, LiveStats};
pub(crate) use merge::{distinct_events, merge_new_rows};
pub use quarantine::{CORRUPT_FILE, Quarantine, QuarantineChange, QuarantinedFile};

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
    /// Event dates merged.
    pub dates_merged: u64,
    /// Event dates skipped (merged by an earlier run, or outside the debug slice).
    pub dates_skipped: u64,
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
            match self.process_file(entry, &markers, raw_table, rejected_table, &mut report).await {
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
        report: &mut RawReport,
    ) -> Result<(DeltaTable, DeltaTable)> {
        // Checked against the manifest's sha256 (downloaded first from an
        // object store); other bytes are quarantined by the caller.
        let copy = landing::local_copy(&self.lake, entry).await?;
        let bar = progress::bytes_bar(Some(entry.size), "raw read", self.show_progress);
        let reader_bar = bar.clone();
        let owned_path = copy.path().to_path_buf();
        let parsed = tokio::task::spawn_blocking(move || {
            read::read_landed_file(&owned_path, move |n| reader_bar.set_position(n))
        })
        .await
        .map_err(|join| LakeError::Unexpected { table: RAW.name, message: format!("reader task failed: {join}") })??;
        bar.finish_and_clear();
        drop(copy);
        info!(file = %entry.file, lines = parsed.lines, valid = parsed.valid_events(), rejected = parsed.rejected.len(), dates = parsed.days.len(), "parsed landed file");
        report.lines += parsed.lines;

        rejected_table = self.write_rejected(entry, &parsed, rejected_table, report).await?;
        crash::point(crash::RAW_AFTER_REJECTED_COMMIT);

        let dates_done = txn::applied_version(&raw_table, RAW.name, &markers.progress).await?.unwrap_or(0) as usize;
        let selected: Vec<(usize, i32)> = parsed
            .days
            .keys()
            .enumerate()
            .map(|(index, &day)| (index + 1, day))
            .filter(|&(position, _)| if self.debug { DEBUG_DATES.contains(&position) } else { position > dates_done })
            .collect();
        report.dates_skipped += (parsed.days.len() - selected.len()) as u64;
        let bar = progress::steps_bar(selected.len() as u64, "raw merge", self.show_progress);
        let mut done_committed = false;
        for &(position, day) in &selected {
            bar.set_message(date_of_day(day).to_string());
            let mut commit_markers = Vec::new();
            if !self.debug {
                commit_markers.push((markers.progress.clone(), position as i64));
                if position == parsed.days.len() {
                    commit_markers.push((markers.done.clone(), 1));
                }
            }
            let events = &parsed.days[&day];
            let (table, inserted) = merge_date(raw_table, day, events, commit_markers).await?;
            raw_table = table;
            // An insert-only MERGE commits (with its markers) iff it inserts.
            done_committed |= !self.debug && position == parsed.days.len() && inserted > 0;
            crash::point(crash::RAW_AFTER_DATE_MERGE);
            report.inserted += inserted;
            report.duplicates += events.len() as u64 - inserted;
            report.dates_merged += 1;
            bar.inc(1);
        }
        bar.finish_and_clear();
        // The done marker rides on the last date's MERGE, but a MERGE that
        // inserts nothing (every event already there) makes no commit, and
        // a file without a valid event (empty, all rejected) has no MERGE:
        // without a commit of their own for the markers, such a file is
        // read again by every later run, which reports its lines again.
        if !self.debug && !done_committed {
            let markers = vec![(markers.progress.clone(), parsed.days.len() as i64), (markers.done.clone(), 1)];
            raw_table = commit_markers_only(raw_table, markers).await?;
        }
        Ok((raw_table, rejected_table))
    }

    async fn write_rejected(
        &self,
        entry: &ManifestEntry,
        parsed: &read::ParsedFile,
        rejected_table: DeltaTable,
        report: &mut RawReport,
    ) -> Result<DeltaTable> {
        let marker = FileMarkers::of(entry).rejected;
        if parsed.rejected.is_empty() {
            return Ok(rejected_table);
        }
        let batch = batch::rejected_batch(&parsed.rejected, &entry.file, chrono::Utc::now())?;
        let (table, written) = commit_unless_applied(rejected_table, REJECTED.name, &marker, |table| {
            table
                .write(vec![batch.clone()])
                .with_commit_properties(txn::commit_with([(marker.clone(), 1)]))
                .into_future()
        })
        .await?;
        if !written {
            return Ok(table);
        }
        report.rejected += parsed.rejected.len() as u64;
        for (reason, count) in parsed.rejected_by_reason() {
            *report.rejected_by_reason.entry(reason.code().to_string()).or_insert(0) += count;
        }
        Ok(table)
    }
}

/// The application-transaction ids that record a file's progress.
struct FileMarkers {
    /// In the raw table: how many of the file's dates are merged.
    progress: String,
    /// In the raw table: the file is finished.
    done: String,
    /// In the rejected table: the file's rejected lines are written.
    rejected: String,
}

impl FileMarkers {
    fn of(entry: &ManifestEntry) -> Self {
        Self {
            progress: format!("sessionlake-raw/{}", entry.sha256),
            done: format!("sessionlake-raw-done/{}", entry.sha256),
            rejected: format!("sessionlake-rejected/{}", entry.sha256),
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

/// Runs `commit` on `table` unless `marker` is already applied there, and
/// says whether it committed. Another `raw` run of the same file may commit
/// the same marker first: Delta fails the later commit (the marker
/// conflicts), and the reloaded table then has the marker. Found by the
/// torture suite's two concurrent raw runs.
async fn commit_unless_applied<Commit, Committed>(
    table: DeltaTable,
    table_name: &'static str,
    marker: &str,
    commit: Commit,
) -> Result<(DeltaTable, bool)>
where
    Commit: FnMut(DeltaTable) -> Committed,
    Committed: std::future::Future<Output = std::result::Result<DeltaTable, DeltaTableError>>,
{
    // Every marker this guards is recorded as 1 (or more).
    commit_unless_reached(table, table_name, marker, 1, commit).await
}

/// [`commit_unless_applied`] for a marker that counts: commits unless
/// `marker` is already recorded at `at_least` or more.
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

/// MERGEs one event date's events, inserting those not in the date's
/// partition yet. Returns the new table and the rows inserted.
async fn merge_date(
    table: DeltaTable,
    day: i32,
    events: &[Event],
    markers: Vec<(String, i64)>,
) -> Result<(DeltaTable, u64)> {
    let distinct = distinct_events(events);
    let batch = raw_batch(&distinct, chrono::Utc::now())?;
    // The date literal on the target side is what prunes the scan to one
    // partition; an event's date is a function of its identity (its ts is
    // part of UNIQUE_ID_ROW), so an exact repeat is always in this partition.
    let date_condition = target(columns::EVENT_DATE).eq(lit(ScalarValue::Date32(Some(day))));
    let merged = merge_new_rows(table, batch, date_condition, markers, MERGE_CONFLICT_RETRIES).await?;
    let metrics = &merged.metrics;
    info!(
        date = %date_of_day(day),
        source_rows = metrics.num_source_rows,
        inserted = metrics.num_target_rows_inserted,
        files_scanned = metrics.num_target_files_scanned,
        files_skipped = metrics.num_target_files_skipped_during_scan,
        rows_copied = metrics.num_target_rows_copied,
        conflicts_retried = merged.conflicts_retried,
        ms = metrics.execution_time_ms,
        "merged raw micro-batch"
    );
    Ok((merged.table, metrics.num_target_rows_inserted as u64))
}

/// Reason codes as report keys.
pub fn reason_counts(counts: &BTreeMap<RejectReason, u64>) -> BTreeMap<String, u64> {
    counts.iter().map(|(reason, count)| (reason.code().to_string(), *count)).collect()
}
