//! Writing serving rows: prepared statements, unlogged batches of rows
//! whose partitions have the same replicas (the grouping the Spark
//! Cassandra connector uses by default: one request, and the coordinator it
//! is routed to holds every row), a bounded number of requests in flight,
//! and retries with backoff while Cassandra is unavailable. Every write is
//! an upsert or a delete by primary key, so writing a row twice is
//! harmless; unknown values are left unset (never null), so an older image
//! cannot erase a known value. Deletes remove the rows of a session's earlier images whose
//! key its newest image no longer has (a start that moved earlier, an end
//! that moved later).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use scylla::client::execution_profile::ExecutionProfileHandle;
use scylla::client::session::Session;
use scylla::routing::Token;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, MaybeUnset};
use sessionlake_model::crash::{self, StopAfter};
use sessionlake_model::tables::cassandra::{COMPLETED_TABLE, STARTED_TABLE};
use tracing::warn;

use crate::config::CassandraConfig;
use crate::error::{CassandraError, Result};
use crate::retry::unavailable_delays;
use crate::rows::{CompletedKey, CompletedRow, StaleRows, StartedKey, StartedRow};

/// How writes are issued.
#[derive(Debug, Clone, Copy)]
pub struct WriteSettings {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Most rows in one batch (of partitions with the same replicas).
    pub batch_rows: usize,
    /// How long to keep retrying while no request succeeds (`None`: forever).
    pub patience: Option<Duration>,
    /// Stop after this many requests, as if the process died (crash tests,
    /// only with the `crash-points` feature).
    pub stop_after_requests: StopAfter,
}

/// What a write pass did.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOutcome {
    /// Requests acknowledged.
    pub requests: u64,
    /// Times the writer waited for Cassandra to come back.
    pub waits: u64,
    /// Whether `stop_after_requests` cut the pass short.
    pub interrupted: bool,
}

/// One request: a chunk of rows of one partition, or one stale row.
#[derive(Clone, Copy)]
enum Chunk<'a> {
    Started(&'a [StartedRow]),
    Completed(&'a [CompletedRow]),
    StaleStarted(&'a StartedKey),
    StaleCompleted(&'a CompletedKey),
}

impl Chunk<'_> {
    fn rows(&self) -> u64 {
        match self {
            Chunk::Started(rows) => rows.len() as u64,
            Chunk::Completed(rows) => rows.len() as u64,
            Chunk::StaleStarted(_) | Chunk::StaleCompleted(_) => 1,
        }
    }
}

/// Prepared inserts into and deletes from both serving tables.
#[derive(Debug, Clone)]
pub struct Writer {
    session: Arc<Session>,
    keyspace: String,
    started: PreparedStatement,
    completed: PreparedStatement,
    delete_started: PreparedStatement,
    delete_completed: PreparedStatement,
    settings: WriteSettings,
    profile: ExecutionProfileHandle,
    requests_done: Arc<AtomicU64>,
}

impl Writer {
    /// Prepares the statements (once per process), with the write profile
    /// of `config` (consistency, timeout; all idempotent).
    pub async fn prepare(session: Arc<Session>, config: &CassandraConfig, settings: WriteSettings) -> Result<Self> {
        let keyspace = &config.keyspace;
        let profile = config.write_profile();
        let mut started = session
            .prepare(format!(
                "INSERT INTO {keyspace}.{STARTED_TABLE} \
                 (country, start_day, ts, session_id, player_id, start_ts, end_ts) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await
            .map_err(CassandraError::prepare(format!("preparing the insert into {STARTED_TABLE}")))?;
        let mut completed = session
            .prepare(format!(
                "INSERT INTO {keyspace}.{COMPLETED_TABLE} \
                 (player_id, ts, session_id, country, start_ts, end_ts) \
                 VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await
            .map_err(CassandraError::prepare(format!("preparing the insert into {COMPLETED_TABLE}")))?;
        let mut delete_started = session
            .prepare(format!(
                "DELETE FROM {keyspace}.{STARTED_TABLE} WHERE country = ? AND start_day = ? AND ts = ? AND session_id = ?"
            ))
            .await
            .map_err(CassandraError::prepare(format!("preparing the delete from {STARTED_TABLE}")))?;
        let mut delete_completed = session
            .prepare(format!(
                "DELETE FROM {keyspace}.{COMPLETED_TABLE} WHERE player_id = ? AND ts = ? AND session_id = ?"
            ))
            .await
            .map_err(CassandraError::prepare(format!("preparing the delete from {COMPLETED_TABLE}")))?;
        for statement in [&mut started, &mut completed, &mut delete_started, &mut delete_completed] {
            statement.set_is_idempotent(true);
            statement.set_execution_profile_handle(Some(profile.clone()));
        }
        Ok(Self {
            session,
            keyspace: keyspace.clone(),
            started,
            completed,
            delete_started,
            delete_completed,
            settings,
            profile,
            requests_done: Arc::default(),
        })
    }

    /// Writes all rows (grouping them by the replicas of their partition)
    /// and deletes the stale ones, telling `on_rows_done` how many rows each
    /// acknowledged request carried (the caller's progress).
    pub async fn write(
        &self,
        started: &mut [StartedRow],
        completed: &mut [CompletedRow],
        stale: &StaleRows,
        on_rows_done: &(dyn Fn(u64) + Sync),
    ) -> Result<WriteOutcome> {
        let batch_rows = self.settings.batch_rows.max(1);
        let started_groups = self.replica_groups(&self.started, STARTED_TABLE, started);
        let completed_groups = self.replica_groups(&self.completed, COMPLETED_TABLE, completed);
        let mut pending: Vec<Chunk<'_>> = group_chunks(started, &started_groups, batch_rows)
            .map(Chunk::Started)
            .chain(group_chunks(completed, &completed_groups, batch_rows).map(Chunk::Completed))
            .chain(stale.started.iter().map(Chunk::StaleStarted))
            .chain(stale.completed.iter().map(Chunk::StaleCompleted))
            .collect();

        let mut outcome = WriteOutcome::default();
        let mut delays = unavailable_delays();
        let mut last_success = Instant::now();
        while !pending.is_empty() {
            let results: Vec<(Chunk<'_>, Option<Result<()>>)> = stream::iter(pending)
                .map(|chunk| async move { (chunk, self.execute(chunk).await) })
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await;
            pending = Vec::new();
            let mut last_error = None;
            for (chunk, result) in results {
                match result {
                    None => outcome.interrupted = true,
                    Some(Ok(())) => {
                        outcome.requests += 1;
                        on_rows_done(chunk.rows());
                        last_success = Instant::now();
                        delays = unavailable_delays();
                    }
                    Some(Err(error)) if error.is_transient() => {
                        pending.push(chunk);
                        last_error = Some(error);
                    }
                    Some(Err(error)) => return Err(error),
                }
            }
            if outcome.interrupted {
                return Ok(outcome);
            }
            if let Some(error) = last_error {
                let delay = delays.next().expect("UNAVAILABLE retries without end");
                if self.settings.patience.is_some_and(|limit| last_success.elapsed() + delay > limit) {
                    return Err(error);
                }
                outcome.waits += 1;
                warn!("Cassandra unavailable ({error}); {} writes wait, retrying in {delay:.1?}", pending.len());
                tokio::time::sleep(delay).await;
            }
        }
        Ok(outcome)
    }

    /// Sorts `rows` by the replicas of their partition, then by partition,
    /// and returns each row's replica group in the new order. A row whose
    /// replicas are unknown (no token or ring yet) is in group 0: still
    /// written, by a coordinator that forwards what it does not hold.
    fn replica_groups<R: ServingRow>(&self, statement: &PreparedStatement, table: &str, rows: &mut [R]) -> Vec<u64> {
        let cluster = self.session.get_cluster_state();
        let group_of = |row: &R| -> u64 {
            let Some(token) = row.token(statement) else { return 0 };
            let mut hasher = std::hash::DefaultHasher::new();
            for (node, _) in cluster.get_token_endpoints(&self.keyspace, table, token) {
                node.host_id.hash(&mut hasher);
            }
            hasher.finish()
        };
        rows.sort_unstable_by(R::partition_cmp);
        // Stable: each group keeps its partitions together and in order.
        rows.sort_by_cached_key(group_of);
        rows.iter().map(group_of).collect()
    }

    /// Sends one chunk; `None` when the crash-test budget is spent.
    async fn execute(&self, chunk: Chunk<'_>) -> Option<Result<()>> {
        if self.settings.stop_after_requests.is_reached(self.requests_done.fetch_add(1, Ordering::SeqCst)) {
            return None;
        }
        let result = match chunk {
            Chunk::Started(rows) => {
                let values: Vec<_> = rows.iter().map(started_values).collect();
                self.send(&self.started, values, STARTED_TABLE).await
            }
            Chunk::Completed(rows) => {
                let values: Vec<_> = rows.iter().map(completed_values).collect();
                self.send(&self.completed, values, COMPLETED_TABLE).await
            }
            Chunk::StaleStarted(key) => {
                let values = (&key.country, CqlTimestamp(key.start_day_ms), CqlTimestamp(key.ts_ms), &key.session_id);
                self.send(&self.delete_started, vec![values], STARTED_TABLE).await
            }
            Chunk::StaleCompleted(key) => {
                let values = (&key.player_id, CqlTimestamp(key.ts_ms), &key.session_id);
                self.send(&self.delete_completed, vec![values], COMPLETED_TABLE).await
            }
        };
        if result.is_ok() {
            // Other requests of the burst are in flight: a crash here leaves
            // some rows of the range written and its progress unsaved.
            crash::point(crash::SERVE_AFTER_REQUEST);
        }
        Some(result)
    }

    async fn send<V: scylla::serialize::row::SerializeRow>(
        &self,
        statement: &PreparedStatement,
        mut values: Vec<V>,
        table: &str,
    ) -> Result<()> {
        let what = || format!("writing to {table}");
        if values.len() == 1 {
            let row = values.pop().expect("one row");
            self.session.execute_unpaged(statement, row).await.map_err(CassandraError::execution(what()))?;
            return Ok(());
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in 0..values.len() {
            batch.append_statement(statement.clone());
        }
        batch.set_is_idempotent(true);
        batch.set_execution_profile_handle(Some(self.profile.clone()));
        self.session.batch(&batch, values).await.map_err(CassandraError::execution(what()))?;
        Ok(())
    }
}

type StartedValues<'a> =
    (&'a str, CqlTimestamp, CqlTimestamp, &'a str, &'a str, CqlTimestamp, MaybeUnset<CqlTimestamp>, i32);

fn started_values(row: &StartedRow) -> StartedValues<'_> {
    (
        &row.country,
        CqlTimestamp(row.start_day_ms),
        CqlTimestamp(row.ts_ms),
        &row.session_id,
        &row.player_id,
        CqlTimestamp(row.ts_ms),
        unset_if_none(row.end_ms.map(CqlTimestamp)),
        row.ttl,
    )
}

type CompletedValues<'a> =
    (&'a str, CqlTimestamp, &'a str, MaybeUnset<&'a str>, MaybeUnset<CqlTimestamp>, CqlTimestamp, i32);

fn completed_values(row: &CompletedRow) -> CompletedValues<'_> {
    (
        &row.player_id,
        CqlTimestamp(row.ts_ms),
        &row.session_id,
        unset_if_none(row.country.as_deref()),
        unset_if_none(row.start_ms.map(CqlTimestamp)),
        CqlTimestamp(row.ts_ms),
        row.ttl,
    )
}

fn unset_if_none<T>(value: Option<T>) -> MaybeUnset<T> {
    value.map_or(MaybeUnset::Unset, MaybeUnset::Set)
}

/// What grouping needs of a serving row: its partition's order and token.
trait ServingRow {
    fn partition_cmp(&self, other: &Self) -> std::cmp::Ordering;
    fn token(&self, insert: &PreparedStatement) -> Option<Token>;
}

impl ServingRow for StartedRow {
    fn partition_cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.country, self.start_day_ms).cmp(&(&other.country, other.start_day_ms))
    }

    fn token(&self, insert: &PreparedStatement) -> Option<Token> {
        insert.calculate_token(&started_values(self)).ok().flatten()
    }
}

impl ServingRow for CompletedRow {
    fn partition_cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.player_id.cmp(&other.player_id)
    }

    fn token(&self, insert: &PreparedStatement) -> Option<Token> {
        insert.calculate_token(&completed_values(self)).ok().flatten()
    }
}

/// Splits rows sorted by replica group (`groups[i]` is row i's) into runs
/// of one group, each at most `limit` long.
fn group_chunks<'a, T>(rows: &'a [T], groups: &'a [u64], limit: usize) -> impl Iterator<Item = &'a [T]> + 'a {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= rows.len() {
            return None;
        }
        let group = groups[start];
        let run = groups[start..].iter().take(limit).take_while(|&&other| other == group).count();
        let chunk = &rows[start..start + run];
        start += run;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::group_chunks;

    #[test]
    fn chunks_never_mix_replica_groups_and_respect_the_limit() {
        let rows = ["a1", "a2", "a3", "b1", "c1", "c2"];
        let groups = [7, 7, 7, 3, 9, 9];
        let chunks: Vec<&[&str]> = group_chunks(&rows, &groups, 2).collect();
        assert_eq!(chunks, vec![&["a1", "a2"][..], &["a3"], &["b1"], &["c1", "c2"]]);
        assert_eq!(group_chunks(&rows, &groups, 100).count(), 3);
        assert_eq!(group_chunks(&rows[..0], &groups[..0], 2).count(), 0);
    }
}
