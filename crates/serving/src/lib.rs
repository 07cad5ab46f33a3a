//! sessionlake's serve stage: the gold table's change data feed, turned into
//! the rows of the API's two query tables in Apache Cassandra.
//!
//! ```text
//!  uc_delta_session_events (Delta, change data feed)
//!     |  serve::ServeStage   newest image per changed session, retention, upserts with TTL
//!     v
//!  keyspace session_events: api_start_session_by_day, api_completed_sessions (+ serve_progress)
//! ```
//!
//! Every CQL statement and row type lives in `sessionlake-cassandra`
//! (connecting, the schema, the writes, the progress row, the reads; no
//! Delta Lake there, so the API does not link DataFusion), and the change
//! feed reader (`SessionFeed`) in `sessionlake-lake`, with the rest of the
//! Delta reading. Here, [`rows`] is the mapping from a gold session to
//! serving rows (retention, TTLs, stale keys), and [`serve`] the stage that
//! keeps Cassandra in step with the lake, exactly once in effect: rows
//! first, progress after, every write an idempotent upsert.

pub mod error;
pub mod rows;
pub mod serve;

pub use error::{Result, ServingError};
