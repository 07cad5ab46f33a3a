//! Grouping raw events of a micro-batch into one row per session.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Int32Array, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::TimestampMicrosecondType;
use deltalake::arrow::error::ArrowError;
use sessionlake_model::tables::raw;
use sessionlake_model::time::day_of_micros;

use crate::error::{LakeError, Result};
use crate::schema::SESSIONS;

/// What a micro-batch says about one session, by the rule that makes gold a
/// function of the set of raw events (see [`SessionUpdate::add_start`] and
/// [`SessionUpdate::add_end`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionUpdate {
    /// Player: the chosen start's; with no start, the chosen end's.
    pub player_id: String,
    /// Country of the chosen start.
    pub country: Option<String>,
    /// Earliest start seen.
    pub start_micros: Option<i64>,
    /// Latest end seen.
    pub end_micros: Option<i64>,
}

impl SessionUpdate {
    /// The day the session is filed under: its start's, or its end's while
    /// no start is known.
    pub fn event_day(&self) -> i32 {
        day_of_micros(self.start_micros.or(self.end_micros).expect("a session has at least one event"))
    }

    /// Folds a start in. The chosen start is the smallest by (ts, player_id,
    /// country): the earliest, ties broken by text so that no arrival order
    /// can matter. It decides start_ts, country and player.
    pub fn add_start(&mut self, micros: i64, player_id: &str, country: Option<&str>) {
        let earlier = match self.start_micros {
            None => true,
            Some(known) => (micros, player_id, country) < (known, self.player_id.as_str(), self.country.as_deref()),
        };
        if earlier {
            self.start_micros = Some(micros);
            self.player_id = player_id.to_string();
            self.country = country.map(str::to_string);
        }
    }

    /// Folds in another fold of the same session, as if its events were
    /// added one by one: a start first (it decides the player whenever it
    /// wins), then an end (whose player counts only while no start is
    /// known, and `other`'s player is its end's when it has no start).
    pub fn absorb(&mut self, other: &SessionUpdate) {
        if let Some(start) = other.start_micros {
            self.add_start(start, &other.player_id, other.country.as_deref());
        }
        if let Some(end) = other.end_micros {
            self.add_end(end, &other.player_id);
        }
    }

    /// Whether both the start and the end are known: such a session
    /// changes again only on a conflicting repeat.
    pub fn is_complete(&self) -> bool {
        self.start_micros.is_some() && self.end_micros.is_some()
    }

    /// Folds an end in. end_ts is the latest end; while no start is known
    /// the player is the latest end's, ties broken by the smallest player.
    pub fn add_end(&mut self, micros: i64, player_id: &str) {
        let later = self.end_micros.is_none_or(|known| micros > known);
        let decides_player = self.start_micros.is_none()
            && (later || (self.end_micros == Some(micros) && player_id < self.player_id.as_str()));
        if decides_player {
            self.player_id = player_id.to_string();
        }
        if later {
            self.end_micros = Some(micros);
        }
    }
}

/// Session updates keyed by session id.
#[derive(Debug, Default)]
pub struct SessionBatch {
    /// One entry per session.
    pub sessions: HashMap<String, SessionUpdate>,
    /// Raw rows read.
    pub rows: u64,
}

impl SessionBatch {
    /// Folds raw-table rows (columns event, session_id, player_id, country, ts) in.
    pub fn add_raw_rows(&mut self, batch: &RecordBatch) -> Result<()> {
        let column = |name: &str| -> Result<&ArrayRef> {
            batch.column_by_name(name).ok_or_else(|| LakeError::Unexpected {
                table: SESSIONS.name,
                message: format!("raw rows lack column {name}"),
            })
        };
        let event = column(raw::EVENT)?.as_string::<i32>();
        let session_id = column(raw::SESSION_ID)?.as_string::<i32>();
        let player_id = column(raw::PLAYER_ID)?.as_string::<i32>();
        let country = column(raw::COUNTRY)?.as_string::<i32>();
        let ts = column(raw::TS)?.as_primitive::<TimestampMicrosecondType>();
        for row in 0..batch.num_rows() {
            self.rows += 1;
            let entry = self.sessions.entry(session_id.value(row).to_string()).or_default();
            let micros = ts.value(row);
            match event.value(row) {
                "start" => {
                    entry.add_start(micros, player_id.value(row), country.is_valid(row).then(|| country.value(row)))
                }
                _ => entry.add_end(micros, player_id.value(row)),
            }
        }
        Ok(())
    }

    /// The batch's sessions as new gold rows (first written at `now`),
    /// in session id order.
    pub fn new_rows(&self, now: DateTime<Utc>) -> Vec<GoldRow<'_>> {
        let mut rows: Vec<GoldRow<'_>> = self
            .sessions
            .iter()
            .map(|(id, fold)| GoldRow { session_id: id, fold, inserted_micros: now.timestamp_micros() })
            .collect();
        rows.sort_unstable_by_key(|row| row.session_id);
        rows
    }
}

/// One gold row to write: a session's fold and when the row was first written.
#[derive(Debug, Clone, Copy)]
pub struct GoldRow<'a> {
    /// Session id.
    pub session_id: &'a str,
    /// What gold knows of the session.
    pub fold: &'a SessionUpdate,
    /// `DL_INSERT_TS`: when the session's row was first written.
    pub inserted_micros: i64,
}

/// Gold-table rows (every column of [`SESSIONS`], `EVENT_DATE` last),
/// updated at `now_micros`.
pub fn gold_rows(rows: &[GoldRow<'_>], now_micros: i64) -> std::result::Result<RecordBatch, ArrowError> {
    let count = rows.len();
    let mut country = StringBuilder::with_capacity(count, count * 2);
    for row in rows {
        country.append_option(row.fold.country.as_deref());
    }
    let utc = |array: TimestampMicrosecondArray| -> ArrayRef { Arc::new(array.with_timezone("UTC")) };
    let folds = || rows.iter().map(|row| row.fold);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(country.finish()),
        Arc::new(StringArray::from_iter_values(folds().map(|fold| fold.player_id.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.session_id))),
        utc(TimestampMicrosecondArray::from(folds().map(|fold| fold.start_micros).collect::<Vec<_>>())),
        utc(TimestampMicrosecondArray::from(folds().map(|fold| fold.end_micros).collect::<Vec<_>>())),
        Arc::new(Int32Array::from_iter_values(folds().map(|fold| i32::from(fold.end_micros.is_some())))),
        utc(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|row| row.inserted_micros))),
        utc(TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(now_micros, count))),
        Arc::new(Date32Array::from_iter_values(folds().map(SessionUpdate::event_day))),
    ];
    RecordBatch::try_new(SESSIONS.arrow_schema(), columns)
}
