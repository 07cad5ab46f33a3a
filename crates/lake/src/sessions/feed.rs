//! Reading the gold table's change data feed: what `serve` consumes.
//!
//! A reader remembers the last gold version it applied and asks for the
//! sessions changed since. Each changed session comes back once, in its
//! newest image (the `insert` or `update_postimage` of the highest commit),
//! so replaying a range of versions always yields the same rows — together
//! with every earlier image the range shows (pre-images, older post-images):
//! a session's start can move earlier and its end later, and a reader keyed
//! by those times must remove what it wrote for an earlier image.

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

/// One session changed by a range of versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    /// The newest image.
    pub image: SessionImage,
    /// The session's other images in the range (before the range's first
    /// change, and between its changes), distinct, oldest version first;
    /// none equal to `image` in its values.
    pub earlier: Vec<SessionImage>,
}

impl SessionImage {
    /// Whether two images hold the same values (versions aside).
    fn same_values(&self, other: &SessionImage) -> bool {
        (&self.player_id, &self.country, self.start_micros, self.end_micros)
            == (&other.player_id, &other.country, other.start_micros, other.end_micros)
    }
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

    /// Every session changed by versions `from..=to`: its newest image and
    /// its earlier ones, sorted by session id.
    pub async fn changes(&self, from: i64, to: i64) -> Result<Vec<SessionChange>> {
        let sql = format!(
            "SELECT {session}, {player}, {country}, {start}, {end}, CAST(_commit_version AS BIGINT), \
             _change_type IN ('insert', 'update_postimage') FROM changes",
            session = columns::SESSION_ID,
            player = columns::PLAYER_ID,
            country = columns::COUNTRY,
            start = columns::START_TS,
            end = columns::END_TS,
        );
        let batches = query::changes(&self.table, SESSIONS.name, from.max(0) as u64, to.max(0) as u64, &sql).await?;
        // Per session: (newest post-image so far, every other image).
        let mut by_session: HashMap<String, (Option<SessionImage>, Vec<SessionImage>)> = HashMap::new();
        for batch in &batches {
            for (image, is_post_image) in images(batch)? {
                let (newest, earlier) = by_session.entry(image.session_id.clone()).or_default();
                if !is_post_image {
                    earlier.push(image);
                    continue;
                }
                match newest {
                    Some(known) if known.version >= image.version => earlier.push(image),
                    _ => earlier.extend(newest.replace(image)),
                }
            }
        }
        let mut changes: Vec<SessionChange> = by_session
            .into_values()
            .filter_map(|(newest, mut earlier)| {
                // A range holding only a removal has no newest image: gold
                // never removes a session, so there is nothing to serve.
                let image = newest?;
                earlier.sort_by_key(|other| other.version);
                let mut distinct: Vec<SessionImage> = Vec::with_capacity(earlier.len());
                for other in earlier {
                    if !other.same_values(&image) && !distinct.iter().any(|seen| seen.same_values(&other)) {
                        distinct.push(other);
                    }
                }
                Some(SessionChange { image, earlier: distinct })
            })
            .collect();
        changes.sort_unstable_by(|a, b| a.image.session_id.cmp(&b.image.session_id));
        Ok(changes)
    }
}

/// The images in `batch`, each with whether it is a post-image (an insert or
/// an update's new values) rather than a pre-image or a delete.
fn images(batch: &RecordBatch) -> Result<Vec<(SessionImage, bool)>> {
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
    let is_post_image = column(6).as_boolean_opt().ok_or_else(|| unexpected("the change type test is not boolean"))?;
    Ok((0..batch.num_rows())
        .map(|row| {
            let image = SessionImage {
                session_id: session_id.value(row).to_string(),
                player_id: player_id.value(row).to_string(),
                country: country.is_valid(row).then(|| country.value(row).to_string()),
                start_micros: start.is_valid(row).then(|| start.value(row)),
                end_micros: end.is_valid(row).then(|| end.value(row)),
                version: version.value(row),
            };
            (image, is_post_image.value(row))
        })
        .collect())
}
