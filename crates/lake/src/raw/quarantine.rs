//! Quarantine: a landed file that does not decompress is set aside, with
//! its reason, instead of failing every later `raw` run; the user releases
//! it for another try ([`Quarantine::retry`]) or gives it up for good
//! ([`Quarantine::drop_file`]).
//!
//! The state lives in the Delta log only, like the other per-file markers
//! (the lake is moving to object storage: no local state files):
//!
//! - raw table, `sessionlake-raw-quarantine/<sha256>` = a counter: odd =
//!   quarantined, even = released (absent = never quarantined). A failed
//!   read moves it from even to odd, `retry` from odd to even; it only ever
//!   grows, so each quarantine has a number of its own.
//! - rejected table, one row per quarantine (reason [`CORRUPT_FILE`], line
//!   number 0, empty `raw_line`/`raw_bytes`, the decoder's complaint as the
//!   message), committed with `sessionlake-rejected-corrupt/<sha256>` = that
//!   quarantine's number, *before* the raw-table marker: a crash between the
//!   two commits reads the file again, fails again and writes no second row.
//!   The row stays when the file is retried or dropped: it is the record of
//!   what was lost.
//! - `drop` commits the file's done marker with no data, so no run reads it
//!   or lists it again.
//!
//! Reports read the reason back from the rejected table (the newest row of
//! the file), so every run lists every quarantined file, not only the run
//! that quarantined it. That query runs only when a file is quarantined.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::datafusion::common::Column;
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::prelude::lit;
use sessionlake_model::tables::rejected as columns;
use tracing::info;

use super::{FileMarkers, commit_markers_unless_reached, commit_unless_reached};
use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::landing::{Manifest, ManifestEntry};
use crate::schema::{RAW, REJECTED};
use crate::txn;

/// The rejected table's reason code of a quarantined file's row. A
/// file-level code the line parser never produces (not a
/// [`sessionlake_model::RejectReason`], whose codes are per line).
pub const CORRUPT_FILE: &str = "corrupt_file";

/// A landed file set aside because it does not decompress.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuarantinedFile {
    /// The landed file's name (in the landing zone and the manifest).
    pub file: String,
    /// Its SHA-256, as in the manifest.
    pub sha256: String,
    /// The decoder's complaint when it was quarantined.
    pub reason: String,
}

/// What `retry` or `drop` did to the file it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineChange {
    /// The file was quarantined: it is now released (retry) or done (drop).
    Changed(QuarantinedFile),
    /// A landed file matches, but it is not quarantined (never was, was
    /// released already, or is done or dropped).
    NotQuarantined {
        /// The landed file's name.
        file: String,
    },
    /// No landed file has this name or SHA-256.
    NotLanded,
}

/// The quarantine of a lake's landed files.
#[derive(Debug, Clone)]
pub struct Quarantine {
    /// The lake.
    pub lake: Lake,
}

impl Quarantine {
    /// Every quarantined file, in landing order, with its reason.
    pub async fn list(&self) -> Result<Vec<QuarantinedFile>> {
        let Some(raw_table) = self.lake.open(&RAW).await? else { return Ok(Vec::new()) };
        let mut quarantined = Vec::new();
        for entry in Manifest::of(&self.lake)?.entries().await? {
            if is_quarantined_now(&raw_table, &entry).await? {
                quarantined.push(entry);
            }
        }
        with_reasons(&self.lake, &quarantined).await
    }

    /// Releases the quarantined file named `wanted` (its name, its landed
    /// path or its SHA-256): the next `raw` reads it again, and quarantines
    /// it again if it still does not decompress.
    pub async fn retry(&self, wanted: &str) -> Result<QuarantineChange> {
        self.change(wanted, |entry, counter| {
            // Even: released. The counter only grows (see the module doc).
            vec![(quarantine_marker(entry), counter + 1)]
        })
        .await
    }

    /// Gives up the quarantined file named `wanted` for good: it is marked
    /// done without data, so no run reads it or lists it again. Its row in
    /// the rejected table stays, as the record of what was lost.
    pub async fn drop_file(&self, wanted: &str) -> Result<QuarantineChange> {
        self.change(wanted, |entry, _| vec![(FileMarkers::of(entry).done, 1)]).await
    }

    /// Commits `markers(entry, counter)` to the raw table when the file
    /// `wanted` is quarantined (with counter `counter`).
    async fn change(
        &self,
        wanted: &str,
        markers: impl Fn(&ManifestEntry, i64) -> Vec<(String, i64)>,
    ) -> Result<QuarantineChange> {
        let entries = Manifest::of(&self.lake)?.entries().await?;
        let Some(entry) = entries.into_iter().find(|entry| names(entry, wanted)) else {
            return Ok(QuarantineChange::NotLanded);
        };
        let not_quarantined = QuarantineChange::NotQuarantined { file: entry.file.clone() };
        let Some(raw_table) = self.lake.open(&RAW).await? else { return Ok(not_quarantined) };
        if txn::applied_version(&raw_table, RAW.name, &FileMarkers::of(&entry).done).await?.is_some() {
            return Ok(not_quarantined);
        }
        let counter = quarantine_counter(&raw_table, &entry).await?;
        if !is_quarantined(counter) {
            return Ok(not_quarantined);
        }
        let quarantined = with_reasons(&self.lake, std::slice::from_ref(&entry)).await?.remove(0);
        let markers = markers(&entry, counter);
        // The guard is the last marker at its new value: a concurrent
        // `retry` or `drop` of the same file that committed first makes
        // this one a no-op instead of a second step.
        let (guard, at_least) = markers.last().cloned().expect("a change commits a marker");
        commit_markers_unless_reached(raw_table, markers, &guard, at_least).await?;
        Ok(QuarantineChange::Changed(quarantined))
    }
}

/// Whether `wanted` names `entry`: its file name, a path ending in it, or
/// its SHA-256 (any case).
fn names(entry: &ManifestEntry, wanted: &str) -> bool {
    let wanted = wanted.trim();
    wanted == entry.file
        || wanted.eq_ignore_ascii_case(&entry.sha256)
        || Path::new(wanted).file_name().is_some_and(|name| name == entry.file.as_str())
}

/// The raw-table marker holding a file's quarantine counter.
fn quarantine_marker(entry: &ManifestEntry) -> String {
    format!("sessionlake-raw-quarantine/{}", entry.sha256)
}

/// The rejected-table marker of a file's quarantine rows.
fn rejected_marker(entry: &ManifestEntry) -> String {
    format!("sessionlake-rejected-corrupt/{}", entry.sha256)
}

/// The file's quarantine counter (0 when never quarantined).
async fn quarantine_counter(raw_table: &DeltaTable, entry: &ManifestEntry) -> Result<i64> {
    Ok(txn::applied_version(raw_table, RAW.name, &quarantine_marker(entry)).await?.unwrap_or(0))
}

fn is_quarantined(counter: i64) -> bool {
    counter % 2 == 1
}

/// Whether the file is quarantined in `raw_table` (its done marker is not
/// looked at: callers skip done files first).
pub(super) async fn is_quarantined_in(raw_table: &DeltaTable, entry: &ManifestEntry) -> Result<bool> {
    Ok(is_quarantined(quarantine_counter(raw_table, entry).await?))
}

/// Quarantined and not done (a dropped file is done).
async fn is_quarantined_now(raw_table: &DeltaTable, entry: &ManifestEntry) -> Result<bool> {
    if txn::applied_version(raw_table, RAW.name, &FileMarkers::of(entry).done).await?.is_some() {
        return Ok(false);
    }
    is_quarantined_in(raw_table, entry).await
}

/// Quarantines `entry`, which does not decompress (`message`: the
/// decoder's complaint): its reason row into the rejected table, then its
/// counter to the next odd value in the raw table. A no-op when another
/// run quarantined it meanwhile. Says whether this call wrote the row.
pub(super) async fn quarantine_file(
    raw_table: DeltaTable,
    rejected_table: DeltaTable,
    entry: &ManifestEntry,
    message: &str,
) -> Result<(DeltaTable, DeltaTable, bool)> {
    let counter = quarantine_counter(&raw_table, entry).await?;
    if is_quarantined(counter) {
        return Ok((raw_table, rejected_table, false));
    }
    let quarantine_number = counter + 1;
    // Logged at info: the binary prints the one warning line per file.
    info!(file = %entry.file, sha256 = %entry.sha256, reason = %message, "quarantining a landed file that does not decompress");
    let marker = rejected_marker(entry);
    let batch = reason_batch(&entry.file, message, chrono::Utc::now())?;
    let (rejected_table, row_written) =
        commit_unless_reached(rejected_table, REJECTED.name, &marker, quarantine_number, |table| {
            table
                .write(vec![batch.clone()])
                .with_commit_properties(txn::commit_with([(marker.clone(), quarantine_number)]))
                .into_future()
        })
        .await?;
    let marker = quarantine_marker(entry);
    let raw_table =
        commit_markers_unless_reached(raw_table, vec![(marker.clone(), quarantine_number)], &marker, quarantine_number)
            .await?;
    Ok((raw_table, rejected_table, row_written))
}

/// The rejected-table row recording why `source_file` is quarantined.
fn reason_batch(source_file: &str, message: &str, now: chrono::DateTime<chrono::Utc>) -> Result<RecordBatch> {
    let by_column: BTreeMap<&str, ArrayRef> = BTreeMap::from([
        (columns::RAW_LINE, Arc::new(StringArray::from_iter_values([""])) as ArrayRef),
        (columns::RAW_BYTES, Arc::new(BinaryArray::from_iter_values([b""]))),
        (columns::SOURCE_FILE, Arc::new(StringArray::from_iter_values([source_file]))),
        (columns::LINE_NUMBER, Arc::new(Int64Array::from_iter_values([0]))),
        (columns::REASON, Arc::new(StringArray::from_iter_values([CORRUPT_FILE]))),
        (columns::MESSAGE, Arc::new(StringArray::from_iter_values([message]))),
        (
            columns::REJECTED_AT,
            Arc::new(TimestampMicrosecondArray::from_iter_values([now.timestamp_micros()]).with_timezone("UTC")),
        ),
    ]);
    debug_assert_eq!(by_column.len(), REJECTED.columns.len(), "one value per column of the rejected table");
    let ordered = REJECTED.columns.iter().map(|&(name, _, _)| by_column[name].clone()).collect();
    Ok(RecordBatch::try_new(REJECTED.arrow_schema(), ordered)?)
}

/// `entries` with the reason of each: the message of its newest
/// [`CORRUPT_FILE`] row in the rejected table.
pub(super) async fn with_reasons(lake: &Lake, entries: &[ManifestEntry]) -> Result<Vec<QuarantinedFile>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let reasons = match lake.open(&REJECTED).await? {
        Some(rejected_table) => newest_reasons(rejected_table).await?,
        None => BTreeMap::new(),
    };
    Ok(entries
        .iter()
        .map(|entry| QuarantinedFile {
            file: entry.file.clone(),
            sha256: entry.sha256.clone(),
            reason: reasons
                .get(&entry.file)
                .map(|(_, message)| message.clone())
                .unwrap_or_else(|| format!("(no {CORRUPT_FILE} row for it in {})", REJECTED.name)),
        })
        .collect())
}

/// The newest [`CORRUPT_FILE`] message per source file: `(rejected_at, message)`.
async fn newest_reasons(rejected_table: DeltaTable) -> Result<BTreeMap<String, (i64, String)>> {
    let column = |name: &str| Expr::Column(Column::from_name(name));
    let context = deltalake::delta_datafusion::create_session().into_inner();
    let provider = rejected_table.table_provider().await.map_err(LakeError::query(REJECTED.name))?;
    let batches = context
        .read_table(provider)
        .and_then(|frame| frame.filter(column(columns::REASON).eq(lit(CORRUPT_FILE))))
        .and_then(|frame| {
            frame.select(vec![column(columns::SOURCE_FILE), column(columns::MESSAGE), column(columns::REJECTED_AT)])
        })
        .map_err(LakeError::query(REJECTED.name))?
        .collect()
        .await
        .map_err(LakeError::query(REJECTED.name))?;
    let mut newest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for batch in &batches {
        // Whatever string and timestamp layouts the scan hands back (plain,
        // view, dictionary), as plain UTF-8 and microseconds.
        let as_type = |index: usize, to: &DataType| cast(batch.column(index), to);
        let (files, messages, times) =
            (as_type(0, &DataType::Utf8)?, as_type(1, &DataType::Utf8)?, as_type(2, &DataType::Int64)?);
        let (files, messages, times) =
            (files.as_string::<i32>(), messages.as_string::<i32>(), times.as_primitive::<Int64Type>());
        for row in 0..batch.num_rows() {
            if files.is_null(row) {
                continue;
            }
            let at = times.value(row);
            let slot = newest.entry(files.value(row).to_string()).or_insert((i64::MIN, String::new()));
            if at >= slot.0 {
                *slot = (at, messages.value(row).to_string());
            }
        }
    }
    Ok(newest)
}
