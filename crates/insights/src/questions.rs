//! The questions, one SQL statement each, over one snapshot of the gold table.
//!
//! All four statements run on a single DataFusion context, whose table
//! provider is frozen at the gold table's version when the context was built:
//! the answers are consistent with each other even while a `sessions` stage
//! commits concurrently.

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;
use sessionlake_lake::{Lake, LakeError, query};
use sessionlake_model::tables::{SESSIONS_TABLE, sessions as columns};

use crate::error::{InsightsError, Result};

/// How many entries the ranked answers keep.
const TOP: usize = 10;
/// `session_status` of a session whose end is known (0 while only started).
const COMPLETED: i32 = 1;
/// The year of "sessions started in 2016", as a half-open UTC interval.
const YEAR_2016_FROM: &str = "2016-01-01T00:00:00Z";
const YEAR_2016_UNTIL: &str = "2017-01-01T00:00:00Z";

/// The answers, read from the gold table `uc_delta_session_events`.
///
/// Serializes to JSON with the ranked pairs as two-element arrays:
/// `"completed_by_country_top10": [["IT", 123], …]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Insights {
    /// Rows of the gold table, that is distinct sessions.
    pub sessions: u64,
    /// Completed sessions whose start is known, per country of the start;
    /// count descending then country ascending, first 10.
    pub completed_by_country_top10: Vec<(String, u64)>,
    /// Completed sessions per player id; count descending then player id
    /// ascending, first 10.
    pub completed_by_player_top10: Vec<(String, u64)>,
    /// The country with the most sessions started in 2016 (UTC); ties go to
    /// the alphabetically smallest country code. `None` when no session
    /// started in 2016.
    pub top_start_country_2016: Option<String>,
}

/// Answers the questions over the lake's gold table.
///
/// Fails with [`InsightsError::NoSessionsTable`] when the `sessions` stage
/// has never run on this lake.
pub async fn compute(lake: &Lake) -> Result<Insights> {
    let context = query::session_context(lake).await?;
    if !context.table_exist(SESSIONS_TABLE).map_err(query_failed)? {
        return Err(InsightsError::NoSessionsTable);
    }
    let (sessions, completed_by_country_top10, completed_by_player_top10, top_start_countries_2016) = futures::try_join!(
        count(&context, sessions_sql()),
        keyed_counts(&context, completed_by_country_sql()),
        keyed_counts(&context, completed_by_player_sql()),
        keyed_counts(&context, top_start_country_2016_sql()),
    )?;
    debug_assert!(completed_by_country_top10.len() <= TOP && completed_by_player_top10.len() <= TOP);
    Ok(Insights {
        sessions,
        completed_by_country_top10,
        completed_by_player_top10,
        top_start_country_2016: top_start_countries_2016.into_iter().next().map(|(country, _)| country),
    })
}

/// An identifier as SQL: always quoted, since DataFusion lower-cases
/// unquoted names and some of the gold table's are upper-case.
fn quoted(identifier: &str) -> String {
    format!("\"{identifier}\"")
}

fn sessions_sql() -> String {
    format!("SELECT COUNT(*) FROM {}", quoted(SESSIONS_TABLE))
}

fn completed_by_country_sql() -> String {
    let (table, country, status) = (quoted(SESSIONS_TABLE), quoted(columns::COUNTRY), quoted(columns::SESSION_STATUS));
    // The country is null exactly while the session's start is unknown.
    format!(
        "SELECT {country}, COUNT(*) AS n FROM {table} \
         WHERE {status} = {COMPLETED} AND {country} IS NOT NULL \
         GROUP BY {country} ORDER BY n DESC, {country} ASC LIMIT {TOP}"
    )
}

fn completed_by_player_sql() -> String {
    let (table, player, status) = (quoted(SESSIONS_TABLE), quoted(columns::PLAYER_ID), quoted(columns::SESSION_STATUS));
    // Player ids are fixed-width lowercase hex: text order is numeric order.
    format!(
        "SELECT {player}, COUNT(*) AS n FROM {table} \
         WHERE {status} = {COMPLETED} \
         GROUP BY {player} ORDER BY n DESC, {player} ASC LIMIT {TOP}"
    )
}

fn top_start_country_2016_sql() -> String {
    let (table, country, start) = (quoted(SESSIONS_TABLE), quoted(columns::COUNTRY), quoted(columns::START_TS));
    format!(
        "SELECT {country}, COUNT(*) AS n FROM {table} \
         WHERE {start} >= TIMESTAMP '{YEAR_2016_FROM}' AND {start} < TIMESTAMP '{YEAR_2016_UNTIL}' \
         AND {country} IS NOT NULL \
         GROUP BY {country} ORDER BY n DESC, {country} ASC LIMIT 1"
    )
}

fn query_failed(source: deltalake::datafusion::error::DataFusionError) -> LakeError {
    LakeError::Query { table: SESSIONS_TABLE, source: Box::new(source) }
}

fn unexpected(message: String) -> LakeError {
    LakeError::Unexpected { table: SESSIONS_TABLE, message }
}

async fn collect(context: &SessionContext, statement: &str) -> Result<Vec<RecordBatch>, LakeError> {
    let frame = context.sql(statement).await.map_err(query_failed)?;
    frame.collect().await.map_err(query_failed)
}

/// The single number a `SELECT COUNT(*)` returns.
async fn count(context: &SessionContext, statement: String) -> Result<u64, LakeError> {
    let batches = collect(context, &statement).await?;
    let mut values = Vec::new();
    for batch in &batches {
        let counts = cast(batch.column(0), &DataType::Int64)?;
        values.extend(counts.as_primitive::<Int64Type>().iter());
    }
    match values.as_slice() {
        [Some(value)] => non_negative(*value),
        _ => Err(unexpected(format!("{statement:?} returned {values:?} instead of one count"))),
    }
}

/// `key, count` rows, in the order the statement returns them. Keys are read
/// through Arrow's cast kernel, so `Utf8`, `Utf8View`, `LargeUtf8` and
/// dictionary-encoded text all work.
async fn keyed_counts(context: &SessionContext, statement: String) -> Result<Vec<(String, u64)>, LakeError> {
    let batches = collect(context, &statement).await?;
    let mut rows = Vec::new();
    for batch in &batches {
        debug_assert_eq!(batch.num_columns(), 2, "{statement}");
        let keys = cast(batch.column(0), &DataType::Utf8)?;
        let counts = cast(batch.column(1), &DataType::Int64)?;
        let (keys, counts) = (keys.as_string::<i32>(), counts.as_primitive::<Int64Type>());
        for row in 0..batch.num_rows() {
            if keys.is_null(row) || counts.is_null(row) {
                return Err(unexpected(format!("{statement:?} returned a null key or count")));
            }
            rows.push((keys.value(row).to_string(), non_negative(counts.value(row))?));
        }
    }
    Ok(rows)
}

fn non_negative(count: i64) -> Result<u64, LakeError> {
    u64::try_from(count).map_err(|_| unexpected(format!("a negative count {count}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_and_lower_case_identifiers_are_quoted() {
        assert_eq!(quoted("EVENT_DATE"), "\"EVENT_DATE\"");
        assert!(completed_by_country_sql().contains("FROM \"uc_delta_session_events\""));
        assert!(completed_by_country_sql().contains("\"session_status\" = 1"));
    }

    #[test]
    fn insights_serialize_ranked_pairs_as_arrays() {
        let insights = Insights {
            sessions: 3,
            completed_by_country_top10: vec![("IT".to_string(), 2)],
            completed_by_player_top10: vec![("00ab".to_string(), 1)],
            top_start_country_2016: None,
        };
        let json = serde_json::to_value(&insights).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "sessions": 3,
                "completed_by_country_top10": [["IT", 2]],
                "completed_by_player_top10": [["00ab", 1]],
                "top_start_country_2016": null,
            })
        );
    }
}
