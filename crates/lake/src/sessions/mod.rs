//! The sessions zone (gold): new raw-table versions → one row per session
//! in `uc_delta_session_events`.
//!
//! Each micro-batch is a range of raw versions read from the raw table's
//! change data feed (inserts only), grouped by session, and MERGEd (upsert)
//! into the gold table. The raw version applied is recorded as a Delta
//! application transaction (app id [`SESSIONS_APP_ID`]) in the same commit
//! as the MERGE, so a crash between "merged" and "remembered" cannot exist.
//!
//! Out of order is safe: each column is filled only when still empty
//! (`coalesce(target, source)`), so a `start` merged after its `end` fills
//! start_ts and country without clobbering end_ts, and the other way round.
//!
//! Pruning never misses a match: before the MERGE, the partitions that
//! already hold any of the batch's sessions are looked up (a scan of two
//! columns), and the MERGE is limited to those plus the batch's own dates.

mod aggregate;
mod feed;

use std::collections::BTreeSet;
use std::time::Instant;

use deltalake::DeltaTable;
use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::Date32Type;
use deltalake::datafusion::logical_expr::{Expr, case};
use deltalake::datafusion::prelude::{SessionContext, coalesce, lit};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::delta_datafusion::create_session;
use sessionlake_model::crash;
use sessionlake_model::tables::{SESSIONS_APP_ID, raw, sessions as columns};
use tracing::info;

use crate::error::{LakeError, Result};
use crate::expr::{SOURCE, TARGET, insert_every_column, source, target};
use crate::lake::Lake;
use crate::schema::{RAW, SESSIONS};
use crate::{progress, query, txn};

pub use aggregate::{SessionBatch, SessionUpdate};
pub use feed::{SessionFeed, SessionImage};

/// The sessions stage's inputs.
#[derive(Debug, Clone)]
pub struct SessionsStage {
    /// The lake.
    pub lake: Lake,
    /// Most raw versions folded into one gold MERGE.
    pub max_versions_per_batch: u64,
    /// About how many raw rows one gold MERGE takes: the number of versions
    /// per micro-batch adapts to the rows the previous versions held, so
    /// memory stays bounded however large a version is.
    pub max_rows_per_batch: u64,
    /// Stop after this many micro-batches (tests use it to simulate a crash
    /// right after a commit); `None` runs until caught up.
    pub max_batches: Option<u64>,
    /// Show progress bars.
    pub show_progress: bool,
}

/// What a sessions run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SessionsReport {
    /// Raw rows read from the change feed.
    pub raw_rows: u64,
    /// Micro-batches merged.
    pub batches: u64,
    /// Gold rows inserted.
    pub inserted: u64,
    /// Gold rows updated (a start or end filled in).
    pub updated: u64,
    /// Raw version applied before this run (`None`: nothing applied yet).
    pub from_version: Option<i64>,
    /// Raw version applied after this run.
    pub to_version: Option<i64>,
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
        let latest = raw_table.version().unwrap_or(0);
        let first = applied.map_or(0, |version| version as u64 + 1);
        if first > latest {
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        let max_step = self.max_versions_per_batch.max(1);
        let bar = progress::steps_bar(latest - first + 1, "sessions", self.show_progress);
        // Size the first range from the table's average rows per version,
        // the next ones from what the previous range held.
        let table_rows: u64 = raw_table
            .snapshot()
            .map_err(LakeError::delta(RAW.name))?
            .log_data()
            .iter()
            .filter_map(|file| file.num_records())
            .sum::<usize>() as u64;
        let mut step = (self.max_rows_per_batch / (table_rows / (latest + 1)).max(1)).clamp(1, max_step);
        let mut from = first;
        while from <= latest {
            if self.max_batches.is_some_and(|limit| report.batches >= limit) {
                break;
            }
            let to = (from + step - 1).min(latest);
            bar.set_message(format!("raw versions {from}..={to}"));
            let batch = read_changes(&raw_table, from, to).await?;
            report.raw_rows += batch.rows;
            if !batch.sessions.is_empty() {
                let (table, inserted, updated) = merge_sessions(gold, &batch, to as i64).await?;
                gold = table;
                crash::point(crash::SESSIONS_AFTER_MERGE);
                report.inserted += inserted;
                report.updated += updated;
                report.to_version = Some(to as i64);
            }
            report.batches += 1;
            bar.inc(to - from + 1);
            let rows_per_version = (batch.rows / (to - from + 1)).max(1);
            step = (self.max_rows_per_batch / rows_per_version).clamp(1, max_step);
            from = to + 1;
        }
        bar.finish_and_clear();
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
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

/// The dates of gold partitions already holding any session of `source`.
async fn partitions_holding(gold: &DeltaTable, source: &RecordBatch) -> Result<BTreeSet<i32>> {
    if gold.snapshot().map(|snapshot| snapshot.log_data().num_files() == 0).unwrap_or(true) {
        return Ok(BTreeSet::new());
    }
    let context = create_session().into_inner();
    let provider = gold.table_provider().await.map_err(LakeError::query(SESSIONS.name))?;
    context.register_table("gold", provider).map_err(LakeError::query(SESSIONS.name))?;
    context.register_batch("batch", source.clone()).map_err(LakeError::query(SESSIONS.name))?;
    let sql = format!(
        "SELECT DISTINCT g.\"{date}\" FROM gold g JOIN batch b ON g.{session} = b.{session}",
        date = columns::EVENT_DATE,
        session = columns::SESSION_ID
    );
    let batches = context
        .sql(&sql)
        .await
        .map_err(LakeError::query(SESSIONS.name))?
        .collect()
        .await
        .map_err(LakeError::query(SESSIONS.name))?;
    Ok(batches
        .iter()
        .flat_map(|batch| batch.column(0).as_primitive::<Date32Type>().iter().flatten().collect::<Vec<_>>())
        .collect())
}

/// MERGEs one micro-batch, recording `raw_version` in the same commit.
/// Returns the table and the rows inserted and updated.
async fn merge_sessions(gold: DeltaTable, batch: &SessionBatch, raw_version: i64) -> Result<(DeltaTable, u64, u64)> {
    let now = chrono::Utc::now();
    let source_batch = batch.to_record_batch(now)?;
    let mut dates = partitions_holding(&gold, &source_batch).await?;
    let source_dates = source_batch.column(8).as_primitive::<Date32Type>();
    dates.extend(source_dates.values().iter().copied());
    let date_list: Vec<Expr> = dates.iter().map(|&day| lit(ScalarValue::Date32(Some(day)))).collect();

    let context = SessionContext::new();
    let source_frame = context.read_batch(source_batch).map_err(LakeError::query(SESSIONS.name))?;
    let predicate = target(columns::EVENT_DATE)
        .in_list(date_list, false)
        .and(target(columns::SESSION_ID).eq(source(columns::SESSION_ID)));

    // First value wins, whichever micro-batch brought it.
    let start_ts = coalesce(vec![target(columns::START_TS), source(columns::START_TS)]);
    let end_ts = coalesce(vec![target(columns::END_TS), source(columns::END_TS)]);
    let filed_under = coalesce(vec![start_ts.clone(), end_ts.clone()]);
    let fills_a_gap =
        target(columns::START_TS)
            .is_null()
            .and(source(columns::START_TS).is_not_null())
            .or(target(columns::END_TS).is_null().and(source(columns::END_TS).is_not_null()));
    let status = case(end_ts.clone().is_null())
        .when(lit(true), lit(0i32))
        .otherwise(lit(1i32))
        .map_err(LakeError::query(SESSIONS.name))?;
    let now_literal = lit(ScalarValue::TimestampMicrosecond(Some(now.timestamp_micros()), Some("UTC".into())));

    let (table, metrics) = gold
        .merge(source_frame, predicate)
        .with_source_alias(SOURCE)
        .with_target_alias(TARGET)
        .with_commit_properties(txn::commit_with([(SESSIONS_APP_ID.to_string(), raw_version)]))
        .when_matched_update(|update| {
            update
                .predicate(fills_a_gap)
                .update(columns::START_TS, start_ts.clone())
                .update(columns::END_TS, end_ts.clone())
                .update(columns::COUNTRY, coalesce(vec![target(columns::COUNTRY), source(columns::COUNTRY)]))
                .update(columns::PLAYER_ID, coalesce(vec![target(columns::PLAYER_ID), source(columns::PLAYER_ID)]))
                .update(columns::SESSION_STATUS, status)
                .update(
                    columns::EVENT_DATE,
                    deltalake::datafusion::logical_expr::cast(
                        filed_under,
                        deltalake::arrow::datatypes::DataType::Date32,
                    ),
                )
                .update(columns::DL_UPDATE_TS, now_literal.clone())
        })
        .map_err(LakeError::delta(SESSIONS.name))?
        .when_not_matched_insert(|insert| insert_every_column(&SESSIONS, insert))
        .map_err(LakeError::delta(SESSIONS.name))?
        .await
        .map_err(LakeError::delta(SESSIONS.name))?;
    info!(
        raw_version,
        source_rows = metrics.num_source_rows,
        inserted = metrics.num_target_rows_inserted,
        updated = metrics.num_target_rows_updated,
        copied = metrics.num_target_rows_copied,
        files_scanned = metrics.num_target_files_scanned,
        files_skipped = metrics.num_target_files_skipped_during_scan,
        partitions = dates.len(),
        ms = metrics.execution_time_ms,
        "merged sessions micro-batch"
    );
    Ok((table, metrics.num_target_rows_inserted as u64, metrics.num_target_rows_updated as u64))
}
