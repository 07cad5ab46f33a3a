//! sessionlake's serving store: Apache Cassandra, modelled for the API's two
//! queries, fed from the gold table's change data feed.
//!
//! ```text
//!  uc_delta_session_events (Delta, change data feed)
//!     |  serve::ServeStage   newest image per changed session, retention, upserts with TTL
//!     v
//!  keyspace session_events: api_start_session_by_day, api_completed_sessions (+ serve_progress)
//! ```
//!
//! Connecting, the schema and the reads live in `sessionlake-cassandra`
//! (no Delta Lake there, so the API does not link DataFusion). Here,
//! [`rows`] is the mapping from a gold session to serving rows, and [`serve`]
//! the stage that keeps Cassandra in step with the lake, exactly once in
//! effect: rows first, progress after, every write an idempotent upsert.

pub mod error;
pub mod rows;
pub mod serve;

pub use error::{Result, ServingError};
