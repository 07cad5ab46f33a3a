//! sessionlake's serving store, Apache Cassandra: every CQL statement and
//! row type of the project — how to reach it, its schema, the serving rows,
//! the writes and the `serve_progress` row of the serve stage, and the API's
//! reads. No Delta Lake here: the API depends on this crate, and the `serve`
//! stage (in `sessionlake-serving`) writes through it.
//!
//! ```text
//!  serve (gold change feed) --upserts--> keyspace session_events
//!                                          api_start_session_by_day    (country, start_day) -> ts DESC
//!                                          api_completed_sessions      player_id -> ts DESC
//!                                          serve_progress
//!  REST API <--read::SessionReader-------/
//! ```
//!
//! [`config`] holds the connection settings, [`schema`] the tables,
//! [`rows`] the serving rows and their keys, [`write`](mod@write) the inserts and
//! deletes (single-partition batches, bounded concurrency), [`serve_progress`]
//! the last gold version served, [`read`] the two API queries with paging,
//! [`retry`] the backoff policy used to wait out an unavailable node.

pub mod config;
pub mod error;
pub mod read;
pub mod retry;
pub mod rows;
pub mod schema;
pub mod serve_progress;
pub mod write;

pub use config::CassandraConfig;
pub use error::{CassandraError, Result};
/// A consistency level (the driver's type, re-exported for settings).
pub use scylla::statement::Consistency;
