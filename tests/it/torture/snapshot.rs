//! What a lake and its keyspace hold, as values to compare: every row of the
//! three Delta tables (minus the columns that record *when* a row was
//! written), the landing zone, and every row of the two serving tables.

use std::collections::{BTreeMap, BTreeSet};

use scylla::client::session::Session;
use sessionlake_lake::{Lake, query};

use crate::support::{ServingRows, dump};
use crate::torture::lakes::TestLake;

/// Rows as text, one vector of columns per row, sorted.
pub type Rows = Vec<Vec<Option<String>>>;

/// Everything a run leaves behind.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Files of the landing zone (name, size), hidden ones included.
    pub landing: Vec<(String, u64)>,
    /// `r_session_events`.
    pub raw: Rows,
    /// `r_session_events_rejected`.
    pub rejected: Rows,
    /// `uc_delta_session_events`.
    pub sessions: Rows,
    /// The serving tables.
    pub served: ServingRows,
}

const RAW: &str = "SELECT country, event, player_id, session_id, CAST(ts AS BIGINT), CAST(\"EVENT_DATE\" AS VARCHAR), \
                   \"UNIQUE_ID_ROW\" FROM r_session_events";
const REJECTED: &str = "SELECT source_file, line_number, reason, message, encode(raw_bytes, 'hex') \
                        FROM r_session_events_rejected";
const SESSIONS: &str = "SELECT session_id, country, player_id, CAST(start_ts AS BIGINT), CAST(end_ts AS BIGINT), \
                        session_status, CAST(\"EVENT_DATE\" AS VARCHAR) FROM uc_delta_session_events";

impl Snapshot {
    /// Reads the lake at `lake` and the serving tables of `keyspace`.
    pub async fn take(lake: impl Into<TestLake>, session: &Session, keyspace: &str) -> Self {
        let lake = lake.into();
        let [raw, rejected, sessions] = lake_rows(&lake).await;
        Self { landing: lake.landing().await, raw, rejected, sessions, served: dump(session, keyspace).await }
    }

    /// Rows compared when two snapshots are compared.
    pub fn rows(&self) -> u64 {
        (self.raw.len()
            + self.rejected.len()
            + self.sessions.len()
            + self.served.started.len()
            + self.served.completed.len()) as u64
    }

    /// Rows whose identity (event id, session id, file line) appears more
    /// than once in its table.
    pub fn duplicates(&self) -> u64 {
        duplicates(&self.raw, &[6]) + duplicates(&self.rejected, &[0, 1]) + duplicates(&self.sessions, &[0])
    }

    /// How `self` (after crashes) differs from `reference` (uninterrupted):
    /// rows missing, rows extra, per table; empty when equal.
    pub fn differences(&self, reference: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        if self.landing != reference.landing {
            out.push(format!("landing zone: {:?} vs uninterrupted {:?}", self.landing, reference.landing));
        }
        for (table, got, want) in [
            ("r_session_events", &self.raw, &reference.raw),
            ("r_session_events_rejected", &self.rejected, &reference.rejected),
            ("uc_delta_session_events", &self.sessions, &reference.sessions),
        ] {
            let (lost, extra) = multiset_difference(got, want);
            if lost + extra > 0 {
                out.push(format!("{table}: {lost} rows lost, {extra} rows extra (of {})", want.len()));
            }
        }
        for (table, lost, extra) in [
            (
                "api_start_session_by_day",
                reference.served.started.difference(&self.served.started).count(),
                self.served.started.difference(&reference.served.started).count(),
            ),
            (
                "api_completed_sessions",
                reference.served.completed.difference(&self.served.completed).count(),
                self.served.completed.difference(&reference.served.completed).count(),
            ),
        ] {
            if lost + extra > 0 {
                out.push(format!("{table}: {lost} rows lost, {extra} rows extra"));
            }
        }
        out
    }

    /// Rows of the reference missing here.
    pub fn lost(&self, reference: &Snapshot) -> u64 {
        let tables =
            [(&self.raw, &reference.raw), (&self.rejected, &reference.rejected), (&self.sessions, &reference.sessions)];
        let lake: usize = tables.iter().map(|(got, want)| multiset_difference(got, want).0).sum();
        let served = reference.served.started.difference(&self.served.started).count()
            + reference.served.completed.difference(&self.served.completed).count();
        (lake + served) as u64
    }
}

/// The rows of the raw, rejected and sessions tables, sorted.
pub async fn lake_rows(lake: impl Into<TestLake>) -> [Rows; 3] {
    let lake = lake.into().lake();
    [rows(&lake, RAW).await, rows(&lake, REJECTED).await, rows(&lake, SESSIONS).await]
}

async fn rows(lake: &Lake, statement: &str) -> Rows {
    let batches = query::sql(lake, statement).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
    let mut rows = query::text_rows(&batches).unwrap();
    rows.sort();
    rows
}

fn duplicates(rows: &Rows, key: &[usize]) -> u64 {
    let mut seen = BTreeSet::new();
    rows.iter().filter(|row| !seen.insert(key.iter().map(|&column| row[column].clone()).collect::<Vec<_>>())).count()
        as u64
}

/// (rows of `want` missing from `got`, rows of `got` not in `want`), counting repeats.
fn multiset_difference(got: &Rows, want: &Rows) -> (usize, usize) {
    let mut counts: BTreeMap<&Vec<Option<String>>, i64> = BTreeMap::new();
    for row in want {
        *counts.entry(row).or_default() += 1;
    }
    for row in got {
        *counts.entry(row).or_default() -= 1;
    }
    let lost = counts.values().filter(|&&n| n > 0).map(|&n| n as usize).sum();
    let extra = counts.values().filter(|&&n| n < 0).map(|&n| (-n) as usize).sum();
    (lost, extra)
}
