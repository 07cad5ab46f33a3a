//! Zone folders, table names and column names, exactly as DESIGN.md gives
//! them. Every other crate uses these constants instead of retyping names.

/// Landing zone folder (bronze) under the lake root, holding received files.
pub const LANDING_DIR: &str = "landingzone/assignment_data";
/// Raw table (silver) location under the lake root.
pub const RAW_TABLE_DIR: &str = "raw/assignment_data/r_session_events";
/// Rejected-lines table location under the lake root.
pub const REJECTED_TABLE_DIR: &str = "raw/assignment_data/r_session_events_rejected";
/// Sessions table (gold) location under the lake root.
pub const SESSIONS_TABLE_DIR: &str = "use_case/uc_assignment/uc_delta_session_events";

/// Raw table name, as registered for SQL.
pub const RAW_TABLE: &str = "r_session_events";
/// Rejected table name, as registered for SQL.
pub const REJECTED_TABLE: &str = "r_session_events_rejected";
/// Gold table name, as registered for SQL.
pub const SESSIONS_TABLE: &str = "uc_delta_session_events";

/// Column names of the raw table.
pub mod raw {
    /// ISO 3166-1 alpha-2 country (starts only).
    pub const COUNTRY: &str = "country";
    /// `start` or `end`.
    pub const EVENT: &str = "event";
    /// Player id, 32 lowercase hex characters.
    pub const PLAYER_ID: &str = "player_id";
    /// Session id, a lowercase UUID with dashes.
    pub const SESSION_ID: &str = "session_id";
    /// Event time (Delta `timestamp`, UTC).
    pub const TS: &str = "ts";
    /// When the row was first written.
    pub const DL_INSERT_TS: &str = "DL_INSERT_TS";
    /// When the row was last written.
    pub const DL_UPDATE_TS: &str = "DL_UPDATE_TS";
    /// Date of `ts`; the partition column.
    pub const EVENT_DATE: &str = "EVENT_DATE";
    /// `<event>-<session_id>`: the identity of an event.
    pub const UNIQUE_ID_ROW: &str = "UNIQUE_ID_ROW";
}

/// Column names of the rejected table.
pub mod rejected {
    /// The line as text (exact when it is valid UTF-8, lossy otherwise).
    pub const RAW_LINE: &str = "raw_line";
    /// The line's exact bytes (lossless, whatever the encoding).
    pub const RAW_BYTES: &str = "raw_bytes";
    /// Landed file the line came from (or `api` for posted events).
    pub const SOURCE_FILE: &str = "source_file";
    /// 1-based line number in the decompressed file.
    pub const LINE_NUMBER: &str = "line_number";
    /// Stable reason code, see [`crate::RejectReason::code`].
    pub const REASON: &str = "reason";
    /// Human-readable detail of the reason.
    pub const MESSAGE: &str = "message";
    /// When the line was rejected.
    pub const REJECTED_AT: &str = "rejected_at";
}

/// Column names of the gold sessions table.
pub mod sessions {
    /// Country from the session's start (null while unknown).
    pub const COUNTRY: &str = "country";
    /// Player id.
    pub const PLAYER_ID: &str = "player_id";
    /// Session id; one row per value.
    pub const SESSION_ID: &str = "session_id";
    /// Start time (null while unknown).
    pub const START_TS: &str = "start_ts";
    /// End time (null while unknown).
    pub const END_TS: &str = "end_ts";
    /// 0 started, 1 completed (an `end` is known).
    pub const SESSION_STATUS: &str = "session_status";
    /// When the row was first written.
    pub const DL_INSERT_TS: &str = "DL_INSERT_TS";
    /// When the row was last written.
    pub const DL_UPDATE_TS: &str = "DL_UPDATE_TS";
    /// Date of the start (of the end while no start is known); partition column.
    pub const EVENT_DATE: &str = "EVENT_DATE";
}

/// Delta application-transaction id under which `sessions` records the last
/// raw table version it applied.
pub const SESSIONS_APP_ID: &str = "sessionlake-sessions";

/// The serving store (Cassandra): keyspace and table names of DESIGN.md.
pub mod cassandra {
    /// Default keyspace.
    pub const KEYSPACE: &str = "session_events";
    /// Sessions started, partitioned by (country, start_day), newest first.
    pub const STARTED_TABLE: &str = "api_start_session_by_day";
    /// The started table of serving model 1, partitioned by (country,
    /// start_hour): no longer read or written; `db reset` drops it.
    pub const LEGACY_STARTED_TABLE: &str = "api_start_session_by_hour";
    /// The serving model's version: part of `serve`'s progress key, so that
    /// tables of a new model are filled from the whole gold table, not only
    /// from the versions that follow the old model's progress.
    pub const SERVING_MODEL_VERSION: u32 = 2;
    /// Completed sessions, partitioned by player_id, newest first.
    pub const COMPLETED_TABLE: &str = "api_completed_sessions";
    /// The last gold version `serve` applied, per gold table id.
    pub const PROGRESS_TABLE: &str = "serve_progress";
}
