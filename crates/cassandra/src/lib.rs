//! sessionlake's serving store, Apache Cassandra: how to reach it, its
//! schema, and the API's reads. No Delta Lake here: the API depends on this
//! crate, and the `serve` stage (in `sessionlake-serving`) writes through it.
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
//! [`read`] the two API queries with paging, [`retry`] the backoff used to
//! wait out an unavailable node.

pub mod config;
pub mod error;
pub mod read;
pub mod retry;
pub mod schema;

pub use config::CassandraConfig;
pub use error::{CassandraError, Result};
/// A consistency level (the driver's type, re-exported for settings).
pub use scylla::statement::Consistency;
