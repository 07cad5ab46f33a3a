//! Arrow record batches for the raw and rejected tables.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    ArrayRef, BinaryBuilder, Date32Array, Int64Array, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use sessionlake_model::Event;
use sessionlake_model::event::UNIQUE_ID_ROW_CAPACITY;
use sessionlake_model::ids::{push_player_id, push_session_id};

use super::read::RejectedLine;
use crate::error::Result;
use crate::schema;

fn timestamps(values: impl IntoIterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC"))
}

/// Raw-table rows for `events`, all written at `now`.
pub fn raw_batch(events: &[Event], now: DateTime<Utc>) -> Result<RecordBatch> {
    let now_micros = now.timestamp_micros();
    let count = events.len();
    let mut country = StringBuilder::with_capacity(count, count * 2);
    let mut player_id = StringBuilder::with_capacity(count, count * 32);
    let mut session_id = StringBuilder::with_capacity(count, count * 36);
    let mut unique_id = StringBuilder::with_capacity(count, count * UNIQUE_ID_ROW_CAPACITY);
    // One scratch text for every id: no allocation per event.
    let mut text = String::with_capacity(UNIQUE_ID_ROW_CAPACITY);
    for event in events {
        country.append_option(event.country_text());
        text.clear();
        push_player_id(&mut text, event.player_id);
        player_id.append_value(&text);
        text.clear();
        push_session_id(&mut text, event.session_id);
        session_id.append_value(&text);
        text.clear();
        event.push_unique_id_row(&mut text);
        unique_id.append_value(&text);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(country.finish()),
        Arc::new(StringArray::from_iter_values(events.iter().map(|event| event.kind.as_str()))),
        Arc::new(player_id.finish()),
        Arc::new(session_id.finish()),
        timestamps(events.iter().map(|event| event.ts_micros)),
        timestamps(std::iter::repeat_n(now_micros, count)),
        timestamps(std::iter::repeat_n(now_micros, count)),
        Arc::new(Date32Array::from_iter_values(events.iter().map(|event| event.event_day()))),
        Arc::new(unique_id.finish()),
    ];
    Ok(RecordBatch::try_new(schema::RAW.arrow_schema(), columns)?)
}

/// Rejected-table rows for `lines` of `source_file`.
pub fn rejected_batch(lines: &[RejectedLine], source_file: &str, now: DateTime<Utc>) -> Result<RecordBatch> {
    let count = lines.len();
    let mut bytes = BinaryBuilder::with_capacity(count, lines.iter().map(|line| line.bytes.len()).sum());
    for line in lines {
        bytes.append_value(&line.bytes);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            lines.iter().map(|line| String::from_utf8_lossy(&line.bytes).into_owned()),
        )),
        Arc::new(bytes.finish()),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(source_file, count))),
        Arc::new(Int64Array::from_iter_values(lines.iter().map(|line| line.line_number as i64))),
        Arc::new(StringArray::from_iter_values(lines.iter().map(|line| line.rejection.reason.code()))),
        Arc::new(StringArray::from_iter_values(lines.iter().map(|line| line.rejection.message.as_str()))),
        timestamps(std::iter::repeat_n(now.timestamp_micros(), count)),
    ];
    Ok(RecordBatch::try_new(schema::REJECTED.arrow_schema(), columns)?)
}
