//! The last gold version `serve` applied, kept in Cassandra next to the
//! rows it describes and written only after them: a crash in between makes
//! the next run rewrite the same rows (upserts), never skip any.
//!
//! Keyed by the gold table's Delta id and the serving model's version: a
//! re-created lake starts over, and so do the tables of a new serving model
//! (they are filled from the whole gold table; see [`progress_key`]).

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use sessionlake_model::tables::cassandra::{PROGRESS_TABLE, SERVING_MODEL_VERSION};

use crate::config::CassandraConfig;
use crate::error::{CassandraError, Result};

/// Reads and writes `serve_progress`.
#[derive(Debug, Clone)]
pub struct ProgressStore {
    session: Arc<Session>,
    load: PreparedStatement,
    save: PreparedStatement,
}

impl ProgressStore {
    /// Prepares the two statements, both at the write consistency (a load
    /// then sees the last save).
    pub async fn prepare(session: Arc<Session>, config: &CassandraConfig) -> Result<Self> {
        let keyspace = &config.keyspace;
        let what = || format!("preparing statements on {PROGRESS_TABLE}");
        let mut load = session
            .prepare(format!("SELECT gold_version FROM {keyspace}.{PROGRESS_TABLE} WHERE gold_table_id = ?"))
            .await
            .map_err(CassandraError::prepare(what()))?;
        let mut save = session
            .prepare(format!(
                "INSERT INTO {keyspace}.{PROGRESS_TABLE} (gold_table_id, gold_version, updated_at) VALUES (?, ?, ?)"
            ))
            .await
            .map_err(CassandraError::prepare(what()))?;
        for statement in [&mut load, &mut save] {
            statement.set_is_idempotent(true);
            statement.set_execution_profile_handle(Some(config.write_profile()));
        }
        Ok(Self { session, load, save })
    }

    /// The last gold version applied for the table `gold_table_id`.
    pub async fn load(&self, gold_table_id: &str) -> Result<Option<i64>> {
        let what = || format!("reading {PROGRESS_TABLE}");
        let result = self
            .session
            .execute_unpaged(&self.load, (progress_key(gold_table_id),))
            .await
            .map_err(CassandraError::execution(what()))?;
        let rows = result.into_rows_result().map_err(|error| CassandraError::Cassandra {
            what: what(),
            message: error.to_string(),
            transient: false,
        })?;
        let row = rows.maybe_first_row::<(Option<i64>,)>().map_err(|error| CassandraError::Cassandra {
            what: what(),
            message: error.to_string(),
            transient: false,
        })?;
        Ok(row.and_then(|(version,)| version))
    }

    /// Records that every gold version up to `version` is applied.
    pub async fn save(&self, gold_table_id: &str, version: i64) -> Result<()> {
        let now = CqlTimestamp(chrono::Utc::now().timestamp_millis());
        self.session
            .execute_unpaged(&self.save, (progress_key(gold_table_id), version, now))
            .await
            .map_err(CassandraError::execution(format!("writing {PROGRESS_TABLE}")))?;
        Ok(())
    }
}

/// The progress row of a gold table for this serving model:
/// `<gold table id>/model-<version>`. Model 1 keyed rows by the bare id, so
/// after an upgrade `serve` finds no progress and serves the whole gold
/// table into the new tables.
pub fn progress_key(gold_table_id: &str) -> String {
    format!("{gold_table_id}/model-{SERVING_MODEL_VERSION}")
}
