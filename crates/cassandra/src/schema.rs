//! The serving tables (DESIGN.md, "Cassandra model"): designed from the two
//! API queries, so neither needs ALLOW FILTERING.
//!
//! ```text
//! api_start_session_by_day   PRIMARY KEY ((country, start_day), ts, session_id)   newest first
//!     "sessions started in the last X hours in a country" = a ts slice of
//!     the one or two day partitions the window touches
//! api_completed_sessions     PRIMARY KEY (player_id, ts, session_id)              newest first
//!     "last 20 completed sessions of a player" = one partition, LIMIT 20
//! serve_progress             PRIMARY KEY (gold_table_id)
//!     the last gold version `serve` applied to the two tables above
//! ```

use scylla::client::session::Session;
use sessionlake_model::tables::cassandra::{COMPLETED_TABLE, LEGACY_STARTED_TABLE, PROGRESS_TABLE, STARTED_TABLE};
use tracing::info;

use crate::config::CassandraConfig;
use crate::error::{CassandraError, Result};

/// The width of a started partition: one UTC day, in milliseconds.
///
/// A day keeps a window of up to 24 hours within two partitions, read as
/// one slice each (an hour per partition made a 24-hour window 25 partition
/// reads, the started route's p99 cost). Even the busiest country of a
/// game 100 times the full-size dataset stays far below Cassandra's
/// recommended 100 MB per partition (README, "Serving model").
pub const STARTED_PARTITION_MS: i64 = 86_400_000;

/// The started partition (UTC day) of an instant in epoch milliseconds.
pub fn start_day_ms(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(STARTED_PARTITION_MS) * STARTED_PARTITION_MS
}

/// The CQL that creates the keyspace and tables, if missing, in order.
pub fn create_statements(config: &CassandraConfig) -> Vec<String> {
    let keyspace = &config.keyspace;
    vec![
        format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {}", config.replication.trim()),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{STARTED_TABLE} (\
             country text, start_day timestamp, ts timestamp, session_id text, \
             player_id text, start_ts timestamp, end_ts timestamp, \
             PRIMARY KEY ((country, start_day), ts, session_id)\
             ) WITH CLUSTERING ORDER BY (ts DESC, session_id ASC) \
             AND comment = 'sessions started, by country and UTC day of start; ts = start time'"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{COMPLETED_TABLE} (\
             player_id text, ts timestamp, session_id text, \
             country text, start_ts timestamp, end_ts timestamp, \
             PRIMARY KEY (player_id, ts, session_id)\
             ) WITH CLUSTERING ORDER BY (ts DESC, session_id ASC) \
             AND comment = 'completed sessions by player; ts = end time'"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{PROGRESS_TABLE} (\
             gold_table_id text PRIMARY KEY, gold_version bigint, updated_at timestamp\
             ) WITH comment = 'last uc_delta_session_events version applied by sessionlake serve'"
        ),
    ]
}

/// Creates the keyspace and tables when missing (idempotent).
pub async fn init(session: &Session, config: &CassandraConfig) -> Result<()> {
    config.validate()?;
    for statement in create_statements(config) {
        session
            .query_unpaged(statement.as_str(), ())
            .await
            .map_err(CassandraError::execution(format!("creating the schema of keyspace {}", config.keyspace)))?;
    }
    info!(keyspace = %config.keyspace, "serving schema ready");
    Ok(())
}

/// Drops the serving tables (rows and progress, and the started table of
/// serving model 1 if present) and creates them again.
pub async fn reset(session: &Session, config: &CassandraConfig) -> Result<()> {
    // Dropping a table of a missing keyspace is an error, even with IF EXISTS.
    init(session, config).await?;
    for table in [STARTED_TABLE, LEGACY_STARTED_TABLE, COMPLETED_TABLE, PROGRESS_TABLE] {
        let statement = format!("DROP TABLE IF EXISTS {}.{table}", config.keyspace);
        session
            .query_unpaged(statement.as_str(), ())
            .await
            .map_err(CassandraError::execution(format!("dropping {}.{table}", config.keyspace)))?;
    }
    init(session, config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_day_is_its_utc_midnight_also_before_1970() {
        let midnight = 1_478_476_800_000; // 2016-11-07T00:00:00Z
        assert_eq!(start_day_ms(midnight), midnight);
        assert_eq!(start_day_ms(midnight + STARTED_PARTITION_MS - 1), midnight);
        assert_eq!(start_day_ms(midnight - 1), midnight - STARTED_PARTITION_MS);
        assert_eq!(start_day_ms(-1), -STARTED_PARTITION_MS);
    }
}
