//! What the API needs from the outside, as traits it owns: a store to read
//! sessions from (Cassandra in production) and a sink to commit posted
//! events to (the raw Delta table). Tests plug in their own; the API crate
//! never links Delta Lake.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use sessionlake_cassandra::CassandraError;
use sessionlake_cassandra::error::ErrorKind;
use sessionlake_cassandra::read::{Cursor, Page, SessionReader, StartedWindow};
use sessionlake_model::Event;

/// A failure of the sink (or of a sink's health check): the request
/// cannot be served now. The message is for the log, never for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// A failure of the store: its kind decides the answer (unavailable: 503
/// with `Retry-After`; permanent: 500). The message is for the log, never
/// for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// Whether retrying later may succeed.
    pub kind: ErrorKind,
    /// What went wrong, with its cause.
    pub message: String,
}

impl StoreError {
    /// The store cannot answer now (no node, timeout, overload).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Unavailable, message: message.into() }
    }

    /// Retrying will not help (schema mismatch, undecodable rows, bad CQL).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Permanent, message: message.into() }
    }
}

impl From<CassandraError> for StoreError {
    fn from(error: CassandraError) -> Self {
        Self { kind: error.kind(), message: error.to_string() }
    }
}

/// Reads served sessions.
pub trait SessionStore: Send + Sync + 'static {
    /// Succeeds when the store answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// A page of a player's last completed sessions, newest first.
    fn completed(
        &self,
        player_id: String,
        cursor: Option<Cursor>,
        page_size: usize,
    ) -> BoxFuture<'_, Result<Page, StoreError>>;
    /// A page of the sessions started in a window, newest first.
    fn started(
        &self,
        window: StartedWindow,
        cursor: Option<Cursor>,
        page_size: usize,
    ) -> BoxFuture<'_, Result<Page, StoreError>>;
}

/// Where a sink made a batch durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The raw table version holding the events, when the sink waited for
    /// the commit.
    pub raw_version: Option<i64>,
    /// The sequence of the write-ahead-log record holding the events, when
    /// the sink acknowledges from its log (the raw table has them after
    /// the next fold, within seconds).
    pub wal_sequence: Option<u64>,
}

impl Committed {
    /// Durable in the raw table, at `raw_version`.
    pub fn in_raw(raw_version: i64) -> Self {
        Self { raw_version: Some(raw_version), wal_sequence: None }
    }

    /// Durable in the write-ahead log, as record `wal_sequence`.
    pub fn in_wal(wal_sequence: u64) -> Self {
        Self { raw_version: None, wal_sequence: Some(wal_sequence) }
    }
}

/// Commits posted events durably.
pub trait EventSink: Send + Sync + 'static {
    /// Returns once the events are durable: in the raw table, or in a
    /// write-ahead log that is folded into it (idempotent: the same events
    /// again change nothing).
    fn append(&self, events: Vec<Event>) -> BoxFuture<'_, Result<Committed, Unavailable>>;

    /// `Ok` while the sink can commit; why not while it cannot (e.g. its
    /// committer task died and is being restarted). `/ready` answers 503
    /// meanwhile. Must not wait: it is called on every `/ready`. Required,
    /// so that no sink is reported healthy by forgetting to say.
    fn health(&self) -> Result<(), Unavailable>;
}

impl SessionStore for SessionReader {
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { Ok(SessionReader::ping(self).await?) }.boxed()
    }

    fn completed(
        &self,
        player_id: String,
        cursor: Option<Cursor>,
        page_size: usize,
    ) -> BoxFuture<'_, Result<Page, StoreError>> {
        async move { Ok(SessionReader::completed(self, &player_id, cursor, page_size).await?) }.boxed()
    }

    fn started(
        &self,
        window: StartedWindow,
        cursor: Option<Cursor>,
        page_size: usize,
    ) -> BoxFuture<'_, Result<Page, StoreError>> {
        async move { Ok(SessionReader::started(self, &window, cursor, page_size).await?) }.boxed()
    }
}

/// A shared store.
pub type SharedStore = Arc<dyn SessionStore>;

/// A shared sink.
pub type SharedSink = Arc<dyn EventSink>;
