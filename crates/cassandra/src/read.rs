//! The API's two reads, newest first, in pages that can resume.
//!
//! A read walks an ordered list of partitions (one for a player's completed
//! sessions; the day partitions of a window, newest day first, for started
//! sessions: one or two for a window of up to 24 hours). A page stops after
//! `page_size` rows and hands back a [`Cursor`]: the partition to resume
//! in, the Cassandra paging state to resume from, and how many rows of that
//! page were already returned. The first page of every remaining partition
//! is fetched concurrently.
//!
//! The common case is cheaper still: a first page of started sessions is
//! read with ONE query over the window's day partitions (`start_day IN ?`,
//! a `ts` slice of each, `LIMIT page_size + 1`); when the whole window fits
//! in the page, that is the answer (sorted here, newest first), and only
//! windows larger than a page take the partition walk.
//!
//! The cursor holds Cassandra's raw paging state: the API signs it before it
//! leaves the process (tamper-evident page tokens), so nothing a client sends
//! reaches the driver unchecked.

use std::sync::Arc;
use std::time::Duration;

use futures::future::try_join_all;
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::response::query_result::QueryResult;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use sessionlake_model::tables::cassandra::{COMPLETED_TABLE, STARTED_TABLE};

use crate::config::CassandraConfig;
use crate::error::{CassandraError, Result};
use crate::schema::{STARTED_PARTITION_MS, start_day_ms};

/// How many completed sessions of a player the API returns at most.
pub const COMPLETED_LIMIT: usize = 20;

/// An hour in milliseconds.
const HOUR_MS: i64 = 3_600_000;

/// A started row with its partition's day (for the one-query read).
#[derive(Debug, Clone, scylla::DeserializeRow)]
struct StartedRow {
    start_day: CqlTimestamp,
    player_id: String,
    session_id: String,
    country: Option<String>,
    ts: CqlTimestamp,
}

/// A session as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, scylla::DeserializeRow)]
pub struct SessionItem {
    /// The player's id.
    pub player_id: String,
    /// The session's id.
    pub session_id: String,
    /// The player's country, when known.
    pub country: Option<String>,
    /// Start time (started sessions) or end time (completed sessions).
    pub ts: CqlTimestamp,
}

/// Where a read resumes: a partition, Cassandra's paging state within it
/// (`None`: its first page), and rows of that page already returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Index into the read's partitions.
    pub partition: u32,
    /// Raw Cassandra paging state of the page to fetch.
    pub state: Option<Vec<u8>>,
    /// Rows at the head of that page already returned.
    pub skip: u32,
}

/// One page of a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The rows, newest first.
    pub items: Vec<SessionItem>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Sessions started in a country between two instants (both inclusive,
/// epoch milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedWindow {
    /// ISO 3166-1 alpha-2 code.
    pub country: String,
    /// Earliest start time.
    pub from_ms: i64,
    /// Latest start time.
    pub to_ms: i64,
}

impl StartedWindow {
    /// The last `hours` hours up to `now_ms`.
    pub fn last_hours(country: impl Into<String>, now_ms: i64, hours: u32) -> Self {
        Self { country: country.into(), from_ms: now_ms - i64::from(hours) * HOUR_MS, to_ms: now_ms }
    }

    /// The day partitions the window touches, newest first.
    pub fn day_partitions(&self) -> Vec<i64> {
        let newest = start_day_ms(self.to_ms);
        let oldest = start_day_ms(self.from_ms);
        (0..=(newest - oldest) / STARTED_PARTITION_MS).map(|back| newest - back * STARTED_PARTITION_MS).collect()
    }
}

/// The prepared reads of the serving tables.
#[derive(Debug, Clone)]
pub struct SessionReader {
    session: Arc<Session>,
    started: PreparedStatement,
    started_window: PreparedStatement,
    completed: PreparedStatement,
    ping: PreparedStatement,
}

impl SessionReader {
    /// Prepares the statements (once per process) with the read profile of
    /// `config` (consistency, speculative execution, `timeout` per read);
    /// fails when the tables are missing (run `sessionlake db init`).
    pub async fn prepare(session: Arc<Session>, config: &CassandraConfig, timeout: Duration) -> Result<Self> {
        let keyspace = &config.keyspace;
        let profile = config.read_profile(timeout);
        let prepare = async |cql: String, what: String| {
            let mut statement = session.prepare(cql).await.map_err(CassandraError::prepare(what))?;
            statement.set_is_idempotent(true);
            statement.set_execution_profile_handle(Some(profile.clone()));
            Ok::<_, CassandraError>(statement)
        };
        let started = prepare(
            format!(
                "SELECT player_id, session_id, country, ts FROM {keyspace}.{STARTED_TABLE} \
                 WHERE country = ? AND start_day = ? AND ts >= ? AND ts <= ?"
            ),
            format!("preparing the read of {keyspace}.{STARTED_TABLE}"),
        )
        .await?;
        let started_window = prepare(
            format!(
                "SELECT start_day, player_id, session_id, country, ts FROM {keyspace}.{STARTED_TABLE} \
                 WHERE country = ? AND start_day IN ? AND ts >= ? AND ts <= ? LIMIT ?"
            ),
            format!("preparing the window read of {keyspace}.{STARTED_TABLE}"),
        )
        .await?;
        let completed = prepare(
            format!(
                "SELECT player_id, session_id, country, ts FROM {keyspace}.{COMPLETED_TABLE} \
                 WHERE player_id = ? LIMIT {COMPLETED_LIMIT}"
            ),
            format!("preparing the read of {keyspace}.{COMPLETED_TABLE}"),
        )
        .await?;
        let ping = prepare("SELECT release_version FROM system.local".into(), "preparing the ping".into()).await?;
        Ok(Self { session, started, started_window, completed, ping })
    }

    /// Succeeds when a node answers a query.
    pub async fn ping(&self) -> Result<()> {
        self.session.execute_unpaged(&self.ping, ()).await.map_err(CassandraError::execution("pinging Cassandra"))?;
        Ok(())
    }

    /// A page of the player's last [`COMPLETED_LIMIT`] completed sessions.
    pub async fn completed(&self, player_id: &str, cursor: Option<Cursor>, page_size: usize) -> Result<Page> {
        let partitions = [player_id.to_string()];
        self.read(&partitions, cursor, page_size, |player_id, page_size, state| {
            self.fetch(&self.completed, (player_id.clone(),), page_size, state)
        })
        .await
    }

    /// A page of the sessions started in `window`.
    pub async fn started(&self, window: &StartedWindow, cursor: Option<Cursor>, page_size: usize) -> Result<Page> {
        let partitions = window.day_partitions();
        if cursor.is_none()
            && let Some(page) = self.started_in_one_query(window, &partitions, page_size).await?
        {
            return Ok(page);
        }
        self.read(&partitions, cursor, page_size, |&day, page_size, state| {
            let values =
                (window.country.as_str(), CqlTimestamp(day), CqlTimestamp(window.from_ms), CqlTimestamp(window.to_ms));
            self.fetch(&self.started, values, page_size, state)
        })
        .await
    }

    /// The whole window in one query, if it fits in one page (else `None`).
    async fn started_in_one_query(
        &self,
        window: &StartedWindow,
        partitions: &[i64],
        page_size: usize,
    ) -> Result<Option<Page>> {
        let days: Vec<CqlTimestamp> = partitions.iter().map(|&day| CqlTimestamp(day)).collect();
        let limit = i32::try_from(page_size + 1).unwrap_or(i32::MAX);
        let values = (window.country.as_str(), days, CqlTimestamp(window.from_ms), CqlTimestamp(window.to_ms), limit);
        let result = self
            .session
            .execute_unpaged(&self.started_window, values)
            .await
            .map_err(CassandraError::execution(READING))?;
        let mut rows: Vec<StartedRow> = typed_rows(result)?;
        if rows.len() > page_size {
            return Ok(None);
        }
        // The partition walk's order: newest day, then the clustering order.
        rows.sort_by(|a, b| {
            (b.start_day.0, b.ts.0).cmp(&(a.start_day.0, a.ts.0)).then_with(|| a.session_id.cmp(&b.session_id))
        });
        let items = rows
            .into_iter()
            .map(|row| SessionItem {
                player_id: row.player_id,
                session_id: row.session_id,
                country: row.country,
                ts: row.ts,
            })
            .collect();
        Ok(Some(Page { items, next: None }))
    }

    /// Walks `partitions` from `cursor` until `page_size` rows are taken.
    async fn read<P, F, Fut>(
        &self,
        partitions: &[P],
        cursor: Option<Cursor>,
        page_size: usize,
        fetch: F,
    ) -> Result<Page>
    where
        F: Fn(&P, usize, Option<Vec<u8>>) -> Fut,
        Fut: Future<Output = Result<Fetched>>,
    {
        debug_assert!(page_size > 0);
        let cursor = cursor.unwrap_or_default();
        let first = cursor.partition as usize;
        if first >= partitions.len() {
            return Ok(Page { items: Vec::new(), next: None });
        }
        // The first page of every partition left, all at once; the resumed
        // one from its paging state, with room for the rows to skip.
        let skip = cursor.skip as usize;
        let mut heads = try_join_all(partitions[first..].iter().enumerate().map(|(offset, partition)| {
            if offset == 0 {
                fetch(partition, page_size + skip, cursor.state.clone())
            } else {
                fetch(partition, page_size, None)
            }
        }))
        .await?;

        let mut items = Vec::with_capacity(page_size);
        for offset in 0..heads.len() {
            let index = first + offset;
            let mut fetched = std::mem::take(&mut heads[offset]);
            let mut skip = if offset == 0 { skip } else { 0 };
            loop {
                let available = fetched.rows.len().saturating_sub(skip);
                let wanted = page_size - items.len();
                if available > wanted {
                    // The page ends inside this fetch: resume at the same
                    // paging state, skipping what was returned.
                    items.extend(fetched.rows.drain(..).skip(skip).take(wanted));
                    let next =
                        Cursor { partition: index as u32, state: fetched.state_used, skip: (skip + wanted) as u32 };
                    return Ok(Page { items, next: Some(next) });
                }
                items.extend(fetched.rows.drain(..).skip(skip));
                skip = 0;
                match fetched.more {
                    Some(state) if items.len() == page_size => {
                        let next = Cursor { partition: index as u32, state: Some(state), skip: 0 };
                        return Ok(Page { items, next: Some(next) });
                    }
                    Some(state) => fetched = fetch(&partitions[index], page_size - items.len(), Some(state)).await?,
                    None => break,
                }
            }
            if items.len() == page_size {
                // Full, and this partition is done: the next page starts in
                // the next partition, unless nothing is left there.
                let rest_empty = heads[offset + 1..].iter().all(|head| head.rows.is_empty() && head.more.is_none());
                let next = (!rest_empty).then(|| Cursor { partition: index as u32 + 1, state: None, skip: 0 });
                return Ok(Page { items, next });
            }
        }
        Ok(Page { items, next: None })
    }

    /// Fetches one page of a statement.
    async fn fetch(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        page_size: usize,
        state: Option<Vec<u8>>,
    ) -> Result<Fetched> {
        let mut statement = statement.clone();
        statement.set_page_size(page_size.clamp(1, i32::MAX as usize) as i32);
        let paging_state = state.as_deref().map_or_else(PagingState::start, PagingState::new_from_raw_bytes);
        let (result, response) = self
            .session
            .execute_single_page(&statement, values, paging_state)
            .await
            .map_err(CassandraError::execution(READING))?;
        let rows = typed_rows(result)?;
        let more = match response {
            PagingStateResponse::HasMorePages { state } => state.as_bytes_slice().map(|bytes| bytes.to_vec()),
            PagingStateResponse::NoMorePages => None,
        };
        Ok(Fetched { rows, state_used: state, more })
    }
}

/// What the reads do, in error messages.
const READING: &str = "reading the serving tables";

/// A result's rows, decoded (a failure is not transient: the schema does
/// not match the code).
fn typed_rows<R>(result: QueryResult) -> Result<Vec<R>>
where
    R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
{
    let undecodable = |error: &dyn std::fmt::Display| CassandraError::Cassandra {
        what: READING.to_string(),
        message: error.to_string(),
        transient: false,
    };
    result
        .into_rows_result()
        .map_err(|error| undecodable(&error))?
        .rows::<R>()
        .map_err(|error| undecodable(&error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| undecodable(&error))
}

/// One fetched Cassandra page.
#[derive(Default)]
struct Fetched {
    rows: Vec<SessionItem>,
    /// The paging state the page was fetched with.
    state_used: Option<Vec<u8>>,
    /// The paging state of the next page, if any.
    more: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIDNIGHT: i64 = 1_478_476_800_000; // 2016-11-07T00:00:00Z

    #[test]
    fn a_window_within_one_day_touches_one_partition() {
        let now = MIDNIGHT + 5 * HOUR_MS + 1_234;
        assert_eq!(StartedWindow::last_hours("IT", now, 3).day_partitions(), vec![MIDNIGHT]);
    }

    #[test]
    fn a_window_across_midnight_touches_two_partitions_newest_first() {
        let now = MIDNIGHT + 1_234; // 2016-11-07T00:00:01.234Z
        let days = StartedWindow::last_hours("IT", now, 24).day_partitions();
        assert_eq!(days, vec![MIDNIGHT, MIDNIGHT - STARTED_PARTITION_MS]);
        // 24 hours never touch more than two days.
        for offset in (0..STARTED_PARTITION_MS).step_by(HOUR_MS as usize / 7) {
            assert!(StartedWindow::last_hours("IT", MIDNIGHT + offset, 24).day_partitions().len() <= 2);
        }
    }

    #[test]
    fn a_window_ending_exactly_at_midnight_still_includes_its_first_instant() {
        let days = StartedWindow::last_hours("IT", MIDNIGHT, 1).day_partitions();
        assert_eq!(days, vec![MIDNIGHT, MIDNIGHT - STARTED_PARTITION_MS]);
    }
}
