//! The raw table's one write: an insert-only merge of distinct events,
//! re-run when it loses a commit race. The raw stage (per chunk of a file)
//! and live ingest (per group of requests) both write through it, so a row has
//! one identity (EVENT_DATE + UNIQUE_ID_ROW) whoever writes it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::{AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::Date32Type;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Version};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, MergePredicate};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaResult, DeltaTable, DeltaTableError};
use futures::StreamExt;
use object_store::ObjectStore;
use sessionlake_model::Event;
use sessionlake_model::tables::raw as columns;
use sessionlake_model::time::date_of_day;

use crate::commit_retry::back_off_after_conflict;
use crate::error::{LakeError, Result};
use crate::expr::dates_predicate;
use crate::keys::{FilterCache, KeyFile, Keys, find_keys, with_key_filter};
use crate::schema::RAW;
use crate::txn;

/// The distinct events among `events`, first occurrences in order: an exact
/// repeat (every field equal) is a duplicate, not a second event, while a
/// conflicting repeat (same kind and session, another ts, player or
/// country) is an event of its own. Keeping every distinct event is what
/// makes the raw table a function of the set of input lines: "first one
/// wins" would depend on arrival order.
pub(crate) fn distinct_events(events: &[Event]) -> Vec<Event> {
    let mut seen = HashSet::with_capacity(events.len());
    events.iter().filter(|event| seen.insert(**event)).copied().collect()
}

/// What one insert-only merge into the raw table did.
pub(crate) struct MergedRows {
    /// The table after the merge (at its commit, or at the version read when
    /// nothing was new and no commit was made).
    pub(crate) table: DeltaTable,
    /// Rows inserted by the attempt that committed.
    pub(crate) inserted: u64,
    /// Target files whose ids the attempt read (the merged dates' files).
    pub(crate) files_scanned: usize,
    /// Target files the attempt never opened (every other date's files).
    pub(crate) files_skipped: usize,
    /// Row groups of the scanned files whose ids the attempt decoded: those
    /// whose bloom filter may hold one of the batch's ids (or that have none).
    pub(crate) row_groups_read: usize,
    /// Time of the whole merge, retries included.
    pub(crate) elapsed: Duration,
    /// Milliseconds the committed attempt spent looking up the ids, writing
    /// the new rows, committing, and loading the commit.
    pub(crate) phase_ms: [u64; 4],
    /// Attempts lost to a concurrent commit and re-run.
    pub(crate) conflicts_retried: u32,
}

/// Inserts the rows of `batch` (rows distinct by EVENT_DATE + UNIQUE_ID_ROW,
/// every EVENT_DATE among `dates`) whose UNIQUE_ID_ROW is not yet in the raw
/// table's `dates` partitions, with `markers` in the same commit.
///
/// This is the insert-only MERGE that Delta would run, done in three cheap
/// steps: read only the UNIQUE_ID_ROW column of the `dates` partitions,
/// streamed against a hash set of the batch's ids (memory bounded by the
/// batch, not by the partitions); write the new rows as files; commit them
/// as a `MERGE` whose read predicate is `EVENT_DATE IN (dates)`.
/// delta-rs's MERGE joins the batch with every column of those partitions
/// and held on to the copied target strings, so its memory grew with the
/// table (found at 10× the full-size file: 750 MiB per million events).
///
/// A commit conflict (another writer added files to a partition this merge
/// read) reloads the table and runs the merge again, up to
/// `max_conflict_retries` times: the merge being insert-only and its
/// markers absolute, a re-run never duplicates a row.
pub(crate) async fn merge_new_rows(
    mut table: DeltaTable,
    batch: RecordBatch,
    dates: &BTreeSet<i32>,
    markers: Vec<(String, i64)>,
    max_conflict_retries: u32,
    filters: &FilterCache,
) -> Result<MergedRows> {
    let started = Instant::now();
    let mut conflicts_retried = 0;
    loop {
        match insert_new_rows(&table, &batch, dates, &markers, filters).await {
            Ok(attempt) => {
                let mut phase_ms = attempt.phase_ms;
                if let Some(version) = attempt.committed {
                    let loading = Instant::now();
                    table.update_incremental(Some(version)).await.map_err(LakeError::delta(RAW.name))?;
                    phase_ms[3] = loading.elapsed().as_millis() as u64;
                }
                return Ok(MergedRows {
                    table,
                    inserted: attempt.inserted,
                    files_scanned: attempt.files_scanned,
                    files_skipped: attempt.files_skipped,
                    row_groups_read: attempt.row_groups_read,
                    elapsed: started.elapsed(),
                    phase_ms,
                    conflicts_retried,
                });
            }
            Err(error) => {
                back_off_after_conflict(error, &mut conflicts_retried, max_conflict_retries, "a raw merge")
                    .await
                    .map_err(LakeError::delta(RAW.name))?;
                table.update_state().await.map_err(LakeError::delta(RAW.name))?;
            }
        }
    }
}

/// One attempt of [`merge_new_rows`] against `table`'s snapshot.
struct Attempt {
    inserted: u64,
    files_scanned: usize,
    files_skipped: usize,
    row_groups_read: usize,
    phase_ms: [u64; 4],
    /// The version committed, if anything was new.
    committed: Option<Version>,
}

async fn insert_new_rows(
    table: &DeltaTable,
    batch: &RecordBatch,
    dates: &BTreeSet<i32>,
    markers: &[(String, i64)],
    filters: &FilterCache,
) -> DeltaResult<Attempt> {
    let mut clock = Instant::now();
    let mut phase_ms = [0u64; 4];
    let mut lap = |phase: usize| {
        phase_ms[phase] = clock.elapsed().as_millis() as u64;
        clock = Instant::now();
    };
    let snapshot = table.snapshot()?.clone();
    let days_by_text: HashMap<String, i32> = dates.iter().map(|&day| (date_of_day(day).to_string(), day)).collect();
    let mut files = Vec::new();
    let mut files_skipped = 0;
    for file in snapshot.log_data().iter() {
        let date = file.partition_values_map().remove(columns::EVENT_DATE).flatten();
        match date.and_then(|date| days_by_text.get(&date)) {
            Some(&day) => files.push((day, KeyFile { path: file.object_store_path(), size: file.size() as u64 })),
            None => files_skipped += 1,
        }
    }
    let files_scanned = files.len();
    let (new_rows, row_groups_read) = if files.is_empty() {
        (batch.clone(), 0)
    } else {
        let store = table.log_store().object_store(None);
        let (known, row_groups_read) = known_rows(store, batch, files, filters).await?;
        let new = BooleanArray::from(known.iter().map(|&found| !found).collect::<Vec<_>>());
        (filter_record_batch(batch, &new)?, row_groups_read)
    };
    lap(0);
    let inserted = new_rows.num_rows() as u64;
    if inserted == 0 {
        // Like Delta's MERGE, nothing new makes no commit.
        return Ok(Attempt { inserted, files_scanned, files_skipped, row_groups_read, phase_ms, committed: None });
    }
    let mut writer =
        RecordBatchWriter::for_table(table)?.with_writer_properties(writer_properties(Some(inserted as usize)));
    writer.write(new_rows).await?;
    let adds = writer.flush().await?;
    lap(1);
    let predicate = dates_predicate(dates.iter().copied());
    let operation = DeltaOperation::Merge {
        merge_predicate: Some(format!(
            "{predicate} AND target.\"{id}\" = source.\"{id}\"",
            id = columns::UNIQUE_ID_ROW
        )),
        predicate: Some(predicate),
        matched_predicates: Vec::new(),
        not_matched_predicates: vec![MergePredicate { action_type: "insert".into(), predicate: None }],
        not_matched_by_source_predicates: Vec::new(),
    };
    let commit = CommitBuilder::from(txn::commit_with(markers.iter().cloned()))
        .with_actions(adds.into_iter().map(Action::Add).collect())
        .build(Some(&snapshot), table.log_store(), operation)
        .await?;
    lap(2);
    Ok(Attempt { inserted, files_scanned, files_skipped, row_groups_read, phase_ms, committed: Some(commit.version()) })
}

/// The bytes of raw's key filters a writer keeps (see [`FilterCache`]):
/// about 25M rows' worth, the raw table at 25× the full-size file. Each
/// chunk probes the files of its dates; those of the dates it does not touch
/// are the ones evicted.
pub(crate) const FILTER_CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// Files probed at once: their footers and filters are small reads, and a
/// few in flight hide the store's latency (an object store's above all).
const PROBES_IN_FLIGHT: usize = 4;

/// For each row of `batch`, whether its UNIQUE_ID_ROW is already in one of
/// `files` (each with its partition's day): each file's ids are looked up
/// through its bloom filters ([`find_keys`]), so a chunk decodes the id
/// column only of the row groups that may hold one of its ids, not of
/// every file of its dates. Also returns the row groups decoded.
async fn known_rows(
    store: Arc<dyn ObjectStore>,
    batch: &RecordBatch,
    files: Vec<(i32, KeyFile)>,
    filters: &FilterCache,
) -> DeltaResult<(Vec<bool>, usize)> {
    let ids = batch
        .column_by_name(columns::UNIQUE_ID_ROW)
        .and_then(|column| column.as_string_opt::<i32>())
        .ok_or_else(|| DeltaTableError::Generic(format!("a raw batch without a text {}", columns::UNIQUE_ID_ROW)))?;
    let days = batch
        .column_by_name(columns::EVENT_DATE)
        .and_then(|column| column.as_primitive_opt::<Date32Type>())
        .ok_or_else(|| DeltaTableError::Generic(format!("a raw batch without a date {}", columns::EVENT_DATE)))?;
    let mut rows_by_day: HashMap<i32, Vec<(&str, usize)>> = HashMap::new();
    for (row, (id, day)) in ids.iter().zip(days.iter()).enumerate() {
        if let (Some(id), Some(day)) = (id, day) {
            rows_by_day.entry(day).or_default().push((id, row));
        }
    }
    let rows_by_day: HashMap<i32, Keys<'_>> =
        rows_by_day.into_iter().map(|(day, rows)| (day, Keys::new(rows))).collect();
    let no_rows = Keys::new([]);
    let mut lookups = futures::stream::iter(files)
        .map(|(day, file)| {
            let rows = rows_by_day.get(&day).unwrap_or(&no_rows);
            let store = store.clone();
            async move { find_keys(store, &file, columns::UNIQUE_ID_ROW, rows, filters).await }
        })
        .buffer_unordered(PROBES_IN_FLIGHT);
    let mut known = vec![false; batch.num_rows()];
    let mut row_groups_read = 0;
    while let Some(found) = lookups.next().await {
        let found = found?;
        row_groups_read += found.row_groups_read;
        for row in found.found {
            known[row] = true;
        }
    }
    Ok((known, row_groups_read))
}

/// Parquet settings of raw's files: delta-rs's (Snappy), with a bloom filter
/// on UNIQUE_ID_ROW for the next merges' lookups (see [`with_key_filter`]
/// for `max_rows`), and no dictionary for that column, whose values never
/// repeat in a file. (Left uncompressed, that column would spare a lookup's
/// decoding the Snappy pass, but it made the table a third larger.)
pub(crate) fn writer_properties(max_rows: Option<usize>) -> WriterProperties {
    let builder = WriterProperties::builder()
        .set_created_by(format!("sessionlake {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::SNAPPY)
        .set_column_dictionary_enabled(ColumnPath::from(columns::UNIQUE_ID_ROW), false);
    with_key_filter(builder, columns::UNIQUE_ID_ROW, max_rows).build()
}
