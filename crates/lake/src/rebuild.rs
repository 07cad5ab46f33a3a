//! Rebuilding a change-feed reader from a snapshot, when the history it
//! needs is gone ([`LakeError::HistoryGone`]): a reader must never skip
//! versions it could not read.
//!
//! - `sessions` (reads raw's feed): [`RawSnapshot`] reads the whole raw
//!   table at one version, one EVENT_DATE partition at a time (bounded
//!   memory), in the columns the sessions fold takes. Folding every raw
//!   event again is harmless: the gold fold is idempotent (a minimum or a
//!   maximum per column), so gold ends as the fold of the whole raw table.
//! - `serve` (reads gold's feed): [`GoldSnapshot`] reads the whole gold
//!   table at one version, partition by partition, as session images.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType};
use deltalake::delta_datafusion::create_session;
use sessionlake_model::tables::{raw, sessions as gold};
use sessionlake_model::time::date_of_day;

use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::schema::{RAW, SESSIONS, TableSpec};
use crate::sessions::{SessionChange, SessionImage};

/// The raw table pinned at one version, read partition by partition: the
/// source the sessions stage folds again after a gap.
#[derive(Debug, Clone)]
pub struct RawSnapshot {
    table: DeltaTable,
    days: Vec<i32>,
}

impl RawSnapshot {
    /// The raw table at its latest version; `None` when it does not exist.
    pub async fn open(lake: &Lake) -> Result<Option<Self>> {
        let Some(table) = lake.open(&RAW).await? else { return Ok(None) };
        let days = partition_days(&table, RAW)?;
        Ok(Some(Self { table, days }))
    }

    /// The raw version read: once every partition is folded, the sessions
    /// stage records it as applied (and not before).
    pub fn version(&self) -> i64 {
        self.table.version().map_or(-1, |version| version as i64)
    }

    /// The EVENT_DATE partitions (days since 1970-01-01), in order.
    pub fn days(&self) -> &[i32] {
        &self.days
    }

    /// Every raw event of the partition `day`, in the columns the sessions
    /// fold takes (`SessionBatch::add_raw_rows`): event, session_id,
    /// player_id, country (UTF-8) and ts (microseconds, UTC).
    pub async fn read_day(&self, day: i32) -> Result<Vec<RecordBatch>> {
        let sql = format!(
            "SELECT {event}, {session}, {player}, {country}, {ts} FROM snapshot \
             WHERE \"{date}\" = DATE '{day}'",
            event = raw::EVENT,
            session = raw::SESSION_ID,
            player = raw::PLAYER_ID,
            country = raw::COUNTRY,
            ts = raw::TS,
            date = raw::EVENT_DATE,
            day = date_of_day(day),
        );
        let batches = query_snapshot(&self.table, RAW, &sql).await?;
        let schema = Arc::new(Schema::new(vec![
            Field::new(raw::EVENT, DataType::Utf8, false),
            Field::new(raw::SESSION_ID, DataType::Utf8, false),
            Field::new(raw::PLAYER_ID, DataType::Utf8, false),
            Field::new(raw::COUNTRY, DataType::Utf8, true),
            Field::new(raw::TS, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        ]));
        batches
            .iter()
            .map(|batch| {
                let columns = schema
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .map(|(field, column)| cast(column, field.data_type()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(RecordBatch::try_new(Arc::clone(&schema), columns)?)
            })
            .collect()
    }
}

/// The gold table pinned at one version, read partition by partition: what
/// `serve` writes again after a gap.
#[derive(Debug, Clone)]
pub struct GoldSnapshot {
    table: DeltaTable,
    days: Vec<i32>,
}

impl GoldSnapshot {
    /// The gold table at its latest version; `None` when it does not exist.
    pub async fn open(lake: &Lake) -> Result<Option<Self>> {
        let Some(table) = lake.open(&SESSIONS).await? else { return Ok(None) };
        let days = partition_days(&table, SESSIONS)?;
        Ok(Some(Self { table, days }))
    }

    /// The gold version read: once every partition is served, `serve`
    /// records it as applied.
    pub fn version(&self) -> i64 {
        self.table.version().map_or(-1, |version| version as i64)
    }

    /// The EVENT_DATE partitions (days since 1970-01-01), in order.
    pub fn days(&self) -> &[i32] {
        &self.days
    }

    /// Every session of the partition `day` as a change whose image is the
    /// stored row (version: the snapshot's) with no earlier images, sorted
    /// by session id.
    pub async fn read_day(&self, day: i32) -> Result<Vec<SessionChange>> {
        let sql = format!(
            "SELECT {session}, {player}, {country}, {start}, {end} FROM snapshot WHERE \"{date}\" = DATE '{day}'",
            session = gold::SESSION_ID,
            player = gold::PLAYER_ID,
            country = gold::COUNTRY,
            start = gold::START_TS,
            end = gold::END_TS,
            date = gold::EVENT_DATE,
            day = date_of_day(day),
        );
        let version = self.version();
        let mut changes = Vec::new();
        for batch in query_snapshot(&self.table, SESSIONS, &sql).await? {
            let text = |index: usize| cast(batch.column(index), &DataType::Utf8);
            let (session_id, player_id, country) = (text(0)?, text(1)?, text(2)?);
            let (session_id, player_id, country) =
                (session_id.as_string::<i32>(), player_id.as_string::<i32>(), country.as_string::<i32>());
            let unexpected = |column: &str| LakeError::Unexpected {
                table: SESSIONS.name,
                message: format!("{column} is not a timestamp"),
            };
            let start = batch
                .column(3)
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| unexpected(gold::START_TS))?;
            let end = batch
                .column(4)
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| unexpected(gold::END_TS))?;
            for row in 0..batch.num_rows() {
                let image = SessionImage {
                    session_id: session_id.value(row).to_string(),
                    player_id: player_id.value(row).to_string(),
                    country: country.is_valid(row).then(|| country.value(row).to_string()),
                    start_micros: start.is_valid(row).then(|| start.value(row)),
                    end_micros: end.is_valid(row).then(|| end.value(row)),
                    version,
                };
                changes.push(SessionChange { image, earlier: Vec::new() });
            }
        }
        changes.sort_unstable_by(|a, b| a.image.session_id.cmp(&b.image.session_id));
        Ok(changes)
    }
}

/// The distinct date partitions of a table's snapshot, as day numbers.
fn partition_days(table: &DeltaTable, spec: TableSpec) -> Result<Vec<i32>> {
    let column = spec.partition_by.expect("a date-partitioned table");
    let snapshot = table.snapshot().map_err(LakeError::delta(spec.name))?;
    let mut days = std::collections::BTreeSet::new();
    for file in snapshot.log_data().iter() {
        let Some(text) = file.partition_values_map().remove(column).flatten() else { continue };
        let date = chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|error| LakeError::Unexpected {
            table: spec.name,
            message: format!("partition value {text:?} is not a date: {error}"),
        })?;
        days.insert((date - chrono::DateTime::UNIX_EPOCH.date_naive()).num_days() as i32);
    }
    Ok(days.into_iter().collect())
}

/// Runs `sql` over `table`'s pinned snapshot, registered as `snapshot`.
async fn query_snapshot(table: &DeltaTable, spec: TableSpec, sql: &str) -> Result<Vec<RecordBatch>> {
    let context = create_session().into_inner();
    let provider = table.table_provider().await.map_err(LakeError::query(spec.name))?;
    context.register_table("snapshot", provider).map_err(LakeError::query(spec.name))?;
    let frame = context.sql(sql).await.map_err(LakeError::query(spec.name))?;
    frame.collect().await.map_err(LakeError::query(spec.name))
}
