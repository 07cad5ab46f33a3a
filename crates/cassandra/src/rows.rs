//! The rows of the two serving tables and their primary keys, as the serve
//! stage writes and deletes them ([`crate::write`]); the API reads them back
//! as [`crate::read::SessionItem`]s.

/// A row of `api_start_session_by_day`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRow {
    /// Partition key, part 1.
    pub country: String,
    /// Partition key, part 2: the start truncated to the UTC day (ms).
    pub start_day_ms: i64,
    /// Clustering: the start time (ms).
    pub ts_ms: i64,
    /// Clustering: the session.
    pub session_id: String,
    /// The player.
    pub player_id: String,
    /// The end time (ms), once known.
    pub end_ms: Option<i64>,
    /// Seconds to live.
    pub ttl: i32,
}

/// A row of `api_completed_sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedRow {
    /// Partition key.
    pub player_id: String,
    /// Clustering: the end time (ms).
    pub ts_ms: i64,
    /// Clustering: the session.
    pub session_id: String,
    /// Country of the start, once known.
    pub country: Option<String>,
    /// Start time (ms), once known.
    pub start_ms: Option<i64>,
    /// Seconds to live.
    pub ttl: i32,
}

/// The primary key of a row of `api_start_session_by_day`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedKey {
    /// Partition key, part 1.
    pub country: String,
    /// Partition key, part 2: the UTC day of the start (ms).
    pub start_day_ms: i64,
    /// Clustering: the start time (ms).
    pub ts_ms: i64,
    /// Clustering: the session.
    pub session_id: String,
}

/// The primary key of a row of `api_completed_sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedKey {
    /// Partition key.
    pub player_id: String,
    /// Clustering: the end time (ms).
    pub ts_ms: i64,
    /// Clustering: the session.
    pub session_id: String,
}

/// Rows to remove: written for an earlier image of a session, under a key
/// its newest image no longer has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleRows {
    /// Keys in `api_start_session_by_day`.
    pub started: Vec<StartedKey>,
    /// Keys in `api_completed_sessions`.
    pub completed: Vec<CompletedKey>,
}
