//! Two API requests that return data right now, found in the gold table:
//! what `sessionlake up` prints once the API is ready.

use sessionlake_lake::{Lake, query};
use sessionlake_model::tables::SESSIONS_TABLE;
use sessionlake_model::tables::sessions::{COUNTRY, END_TS, PLAYER_ID, START_TS};

use crate::error::Result;

const HOUR_MICROS: i64 = 3_600_000_000;
const YEAR_MICROS: i64 = 365 * 24 * HOUR_MICROS;

/// Two requests that return data as of a clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiExamples {
    /// The player of the latest session completed within a year before the
    /// clock (served: within the year of retention).
    pub player: Option<String>,
    /// The country with the most sessions started in the last 3 hours (or
    /// else 24) before the clock, and those hours.
    pub started: Option<(String, u32)>,
}

/// Looks the examples up in the gold table as of `now_micros` (the service
/// clock, in microseconds since the epoch).
pub async fn api_examples(lake: &Lake, now_micros: i64) -> Result<ApiExamples> {
    let since = |column: &str, micros: i64| {
        format!("{column} IS NOT NULL AND CAST({column} AS BIGINT) BETWEEN {} AND {now_micros}", now_micros - micros)
    };
    let player = first_value(
        lake,
        format!(
            "SELECT {PLAYER_ID} FROM {SESSIONS_TABLE} WHERE {} ORDER BY {END_TS} DESC LIMIT 1",
            since(END_TS, YEAR_MICROS)
        ),
    )
    .await?;
    let mut started = None;
    for hours in [3, 24] {
        let busiest = first_value(
            lake,
            format!(
                "SELECT CAST({COUNTRY} AS VARCHAR) AS country, COUNT(*) AS n FROM {SESSIONS_TABLE} \
                 WHERE {COUNTRY} IS NOT NULL AND {} GROUP BY 1 ORDER BY n DESC, country LIMIT 1",
                since(START_TS, i64::from(hours) * HOUR_MICROS)
            ),
        )
        .await?;
        if let Some(country) = busiest {
            started = Some((country, hours));
            break;
        }
    }
    Ok(ApiExamples { player, started })
}

/// The first non-null value of the first row `statement` returns.
async fn first_value(lake: &Lake, statement: String) -> Result<Option<String>> {
    let batches = query::sql(lake, &statement).await?;
    Ok(query::text_rows(&batches)?.into_iter().next().and_then(|row| row.into_iter().flatten().next()))
}
