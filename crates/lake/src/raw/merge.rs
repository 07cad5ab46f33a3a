//! The raw table's one write: an insert-only MERGE of distinct events,
//! re-run when it loses a commit race. The raw stage (per event date) and
//! live ingest (per group of requests) both write through it, so a row has
//! one identity (EVENT_DATE + UNIQUE_ID_ROW) whoever writes it.

use std::collections::HashSet;

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::operations::merge::MergeMetrics;
use sessionlake_model::Event;
use sessionlake_model::tables::raw as columns;

use crate::commit_retry::back_off_after_conflict;
use crate::error::{LakeError, Result};
use crate::expr::{SOURCE, TARGET, insert_every_column, source, target};
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

/// What one insert-only MERGE into the raw table did.
pub(crate) struct MergedRows {
    /// The table after the MERGE (at its commit, or at the version read when
    /// nothing was new and no commit was made).
    pub(crate) table: DeltaTable,
    /// delta-rs's metrics of the attempt that committed.
    pub(crate) metrics: MergeMetrics,
    /// Attempts lost to a concurrent commit and re-run.
    pub(crate) conflicts_retried: u32,
}

/// MERGEs `batch` (rows distinct by EVENT_DATE + UNIQUE_ID_ROW) into the raw
/// table, inserting the rows whose UNIQUE_ID_ROW is not yet in the target
/// rows `date_condition` selects, with `markers` in the same commit.
///
/// A commit conflict (another writer added files to a partition this MERGE
/// read) reloads the table and runs the MERGE again, up to
/// `max_conflict_retries` times: the MERGE being insert-only and its
/// markers absolute, a re-run never duplicates a row.
pub(crate) async fn merge_new_rows(
    mut table: DeltaTable,
    batch: RecordBatch,
    date_condition: Expr,
    markers: Vec<(String, i64)>,
    max_conflict_retries: u32,
) -> Result<MergedRows> {
    let predicate = date_condition.and(target(columns::UNIQUE_ID_ROW).eq(source(columns::UNIQUE_ID_ROW)));
    let context = SessionContext::new();
    let mut conflicts_retried = 0;
    loop {
        let source_frame = context.read_batch(batch.clone()).map_err(LakeError::query(RAW.name))?;
        let attempt = table
            .clone()
            .merge(source_frame, predicate.clone())
            .with_source_alias(SOURCE)
            .with_target_alias(TARGET)
            .with_commit_properties(txn::commit_with(markers.clone()))
            .when_not_matched_insert(|insert| insert_every_column(&RAW, insert))
            .map_err(LakeError::delta(RAW.name))?
            .await;
        match attempt {
            Ok((table, metrics)) => return Ok(MergedRows { table, metrics, conflicts_retried }),
            Err(error) => {
                back_off_after_conflict(error, &mut conflicts_retried, max_conflict_retries, "a raw merge")
                    .await
                    .map_err(LakeError::delta(RAW.name))?;
                table.update_state().await.map_err(LakeError::delta(RAW.name))?;
            }
        }
    }
}
