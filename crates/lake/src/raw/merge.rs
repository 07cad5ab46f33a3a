//! The raw table's one write: an insert-only merge of distinct events,
//! re-run when it loses a commit race. The raw stage (per chunk of a file)
//! and live ingest (per group of requests) both write through it, so a row has
//! one identity (EVENT_DATE + UNIQUE_ID_ROW) whoever writes it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use deltalake::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::datafusion::prelude::{SessionContext, ident};
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Version};
use deltalake::protocol::{DeltaOperation, MergePredicate};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaResult, DeltaTable, DeltaTableError};
use futures::StreamExt;
use sessionlake_model::Event;
use sessionlake_model::tables::raw as columns;
use sessionlake_model::time::date_of_day;

use crate::commit_retry::back_off_after_conflict;
use crate::error::{LakeError, Result};
use crate::expr::{date_literal, dates_predicate};
use crate::query::text_values;
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
    /// Time of the whole merge, retries included.
    pub(crate) elapsed: Duration,
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
) -> Result<MergedRows> {
    let started = Instant::now();
    let mut conflicts_retried = 0;
    loop {
        match insert_new_rows(&table, &batch, dates, &markers).await {
            Ok(attempt) => {
                if let Some(version) = attempt.committed {
                    table.update_incremental(Some(version)).await.map_err(LakeError::delta(RAW.name))?;
                }
                return Ok(MergedRows {
                    table,
                    inserted: attempt.inserted,
                    files_scanned: attempt.files_scanned,
                    files_skipped: attempt.files_skipped,
                    elapsed: started.elapsed(),
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
    /// The version committed, if anything was new.
    committed: Option<Version>,
}

async fn insert_new_rows(
    table: &DeltaTable,
    batch: &RecordBatch,
    dates: &BTreeSet<i32>,
    markers: &[(String, i64)],
) -> DeltaResult<Attempt> {
    let snapshot = table.snapshot()?.clone();
    let date_texts: Vec<String> = dates.iter().map(|&day| date_of_day(day).to_string()).collect();
    let mut files_scanned = 0;
    let mut files_skipped = 0;
    for file in snapshot.log_data().iter() {
        let date = file.partition_values_map().remove(columns::EVENT_DATE).flatten();
        match date {
            Some(date) if date_texts.contains(&date) => files_scanned += 1,
            _ => files_skipped += 1,
        }
    }
    let new_rows = if files_scanned == 0 {
        batch.clone()
    } else {
        let known = known_rows(table, batch, dates).await?;
        filter_record_batch(batch, &BooleanArray::from(known.iter().map(|&found| !found).collect::<Vec<_>>()))?
    };
    let inserted = new_rows.num_rows() as u64;
    if inserted == 0 {
        // Like Delta's MERGE, nothing new makes no commit.
        return Ok(Attempt { inserted, files_scanned, files_skipped, committed: None });
    }
    let mut writer = RecordBatchWriter::for_table(table)?;
    writer.write(new_rows).await?;
    let adds = writer.flush().await?;
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
    Ok(Attempt { inserted, files_scanned, files_skipped, committed: Some(commit.version()) })
}

/// For each row of `batch`, whether its UNIQUE_ID_ROW is already in the
/// table's `dates` partitions: one streamed scan of that one column.
async fn known_rows(table: &DeltaTable, batch: &RecordBatch, dates: &BTreeSet<i32>) -> DeltaResult<Vec<bool>> {
    let ids = batch
        .column_by_name(columns::UNIQUE_ID_ROW)
        .and_then(|column| column.as_string_opt::<i32>())
        .ok_or_else(|| DeltaTableError::Generic(format!("a raw batch without a text {}", columns::UNIQUE_ID_ROW)))?;
    let mut rows: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for (row, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            rows.insert(id, row);
        }
    }
    let mut known = vec![false; batch.num_rows()];
    let context = SessionContext::new();
    let date_list = dates.iter().map(|&day| date_literal(day)).collect();
    let mut stream = context
        .read_table(table.table_provider().await?)?
        .filter(ident(columns::EVENT_DATE).in_list(date_list, false))?
        .select(vec![ident(columns::UNIQUE_ID_ROW)])?
        .execute_stream()
        .await?;
    while let Some(scanned) = stream.next().await {
        let scanned = scanned?;
        for id in text_values(scanned.column(0), columns::UNIQUE_ID_ROW)?.flatten() {
            if let Some(&row) = rows.get(id) {
                known[row] = true;
            }
        }
    }
    Ok(known)
}
