//! Reading the gold table's change data feed: what `serve` consumes.
//!
//! A reader remembers the last gold version it applied and asks for the
//! sessions changed since. Each changed session comes back once, in its
//! newest image (the `insert` or `update_postimage` of the highest commit),
//! so replaying a range of versions always yields the same rows.

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type, TimestampMicrosecondType};
use sessionlake_model::tables::sessions as columns;
use std::collections::HashMap;

use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::query;
use crate::schema::SESSIONS;

/// One session as the gold table holds it after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionImage {
    /// Session id.
    pub session_id: String,
    /// Player id.
    pub player_id: String,
    /// Country of the start, when known.
    pub country: Option<String>,
    /// Start time in microseconds since the epoch (UTC), when known.
    pub start_micros: Option<i64>,
    /// End time in microseconds since the epoch (UTC), when known.
    pub end_micros: Option<i64>,
    /// The gold version that wrote this image.
    pub version: i64,
}

/// The gold table, opened for reading its change feed.
#[derive(Debug, Clone)]
pub struct SessionFeed {
    table: DeltaTable,
    table_id: String,
}

impl SessionFeed {
    /// Opens the gold table; `None` when `sessions` has not created it yet.
    pub async fn open(lake: &Lake) -> Result<Option<Self>> {
        let Some(table) = lake.open(&SESSIONS).await? else { return Ok(None) };
        let snapshot = table.snapshot().map_err(LakeError::delta(SESSIONS.name))?;
        // The kernel keeps the id crate-private; its serde form is the
        // protocol's `metaData.id`.
        let metadata = serde_json::to_value(snapshot.metadata()).map_err(|error| LakeError::Unexpected {
            table: SESSIONS.name,
            message: format!("table metadata does not serialize: {error}"),
        })?;
        let table_id = metadata["id"].as_str().unwrap_or_default().to_string();
        if table_id.is_empty() {
            return Err(LakeError::Unexpected { table: SESSIONS.name, message: "table metadata has no id".into() });
        }
        Ok(Some(Self { table, table_id }))
    }

    /// The table's unique id (a new id means a new table: start over).
    pub fn table_id(&self) -> &str {
        &self.table_id
    }

    /// The latest version of the table.
    pub fn version(&self) -> i64 {
        self.table.version().map_or(0, |version| version as i64)
    }

    /// The newest image of every session changed by versions `from..=to`.
    pub async fn changes(&self, from: i64, to: i64) -> Result<Vec<SessionImage>> {
        let sql = format!(
            "SELECT {session}, {player}, {country}, {start}, {end}, CAST(_commit_version AS BIGINT) FROM changes \
             WHERE _change_type IN ('insert', 'update_postimage')",
            session = columns::SESSION_ID,
            player = columns::PLAYER_ID,
            country = columns::COUNTRY,
            start = columns::START_TS,
            end = columns::END_TS,
        );
        let batches = query::changes(&self.table, SESSIONS.name, from.max(0) as u64, to.max(0) as u64, &sql).await?;
        let mut newest: HashMap<String, SessionImage> = HashMap::new();
        for batch in &batches {
            for image in images(batch)? {
                match newest.get(&image.session_id) {
                    Some(known) if known.version >= image.version => {}
                    _ => {
                        newest.insert(image.session_id.clone(), image);
                    }
                }
            }
        }
        let mut images: Vec<SessionImage> = newest.into_values().collect();
        images.sort_unstable_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(images)
    }
}

fn images(batch: &RecordBatch) -> Result<Vec<SessionImage>> {
    let column = |index: usize| -> &ArrayRef { batch.column(index) };
    let unexpected = |message: &str| LakeError::Unexpected { table: SESSIONS.name, message: message.to_string() };
    // Text may come back as string views: read it as plain UTF-8.
    let text = |index: usize| cast(column(index), &DataType::Utf8);
    let (session_id, player_id, country) = (text(0)?, text(1)?, text(2)?);
    let session_id = session_id.as_string::<i32>();
    let player_id = player_id.as_string::<i32>();
    let country = country.as_string::<i32>();
    let start = column(3)
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| unexpected("start_ts is not a timestamp"))?;
    let end = column(4)
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| unexpected("end_ts is not a timestamp"))?;
    let version = column(5).as_primitive_opt::<Int64Type>().ok_or_else(|| unexpected("_commit_version is not long"))?;
    Ok((0..batch.num_rows())
        .map(|row| SessionImage {
            session_id: session_id.value(row).to_string(),
            player_id: player_id.value(row).to_string(),
            country: country.is_valid(row).then(|| country.value(row).to_string()),
            start_micros: start.is_valid(row).then(|| start.value(row)),
            end_micros: end.is_valid(row).then(|| end.value(row)),
            version: version.value(row),
        })
        .collect())
}
