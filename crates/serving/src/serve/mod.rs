//! The serve stage: the gold table's change data feed → the two serving
//! tables in Cassandra.
//!
//! Each pass reads the gold versions newer than the last one applied (kept
//! in `serve_progress`), in ranges; for each range it takes the newest image
//! of every changed session, turns it into a started row and/or a completed
//! row (skipping events older than the retention window), upserts them,
//! deletes the rows its earlier images were served under when the key moved
//! (a start that became earlier, an end that became later), and only then
//! records the range as applied. A crash anywhere replays at most
//! one range, and replaying writes the same rows again.

use std::sync::Arc;
use std::time::Instant;

use scylla::client::session::Session;
use sessionlake_lake::Lake;
use sessionlake_lake::LakeError;
use sessionlake_lake::progress::{Progress, steps_bar};
use sessionlake_lake::rebuild::GoldSnapshot;
use sessionlake_lake::sessions::{SessionChange, SessionFeed};
use sessionlake_model::{Clock, crash};
use tracing::{info, warn};

use crate::error::Result;
use crate::rows::{Retention, StaleRows, rows_for, stale_rows};
use sessionlake_cassandra::retry::retry_transient;
use sessionlake_cassandra::{CassandraConfig, schema};

pub use sessionlake_cassandra::serve_progress::ProgressStore;
pub use sessionlake_cassandra::write::{WriteOutcome, WriteSettings, Writer};

/// The serve stage's inputs.
#[derive(Debug, Clone)]
pub struct ServeStage {
    /// The lake holding the gold table.
    pub lake: Lake,
    /// Where Cassandra is.
    pub cassandra: CassandraConfig,
    /// The service clock (retention and TTLs).
    pub clock: Clock,
    /// How writes are issued.
    pub writes: WriteSettings,
    /// Most gold versions read in one range.
    pub max_versions_per_range: i64,
    /// Show a progress bar.
    pub show_progress: bool,
}

/// What a serve pass did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ServeReport {
    /// Gold sessions read from the change feed (newest image each).
    pub sessions: u64,
    /// Rows written to `api_start_session_by_day`.
    pub started_rows: u64,
    /// Rows written to `api_completed_sessions`.
    pub completed_rows: u64,
    /// Rows not written: their event is older than one year before the clock.
    pub expired_rows: u64,
    /// Rows deleted: written for an earlier image of a session under a key
    /// its newest image no longer has (its start moved earlier, its end later).
    pub stale_rows_deleted: u64,
    /// CQL requests (batches and single inserts) acknowledged.
    pub requests: u64,
    /// Times the writer waited for an unavailable Cassandra.
    pub waits: u64,
    /// Gold ranges applied.
    pub ranges: u64,
    /// Gold version applied before this pass (`None`: nothing yet).
    pub from_version: Option<i64>,
    /// Gold version applied after this pass.
    pub to_version: Option<i64>,
    /// Whether a crash-test budget stopped the pass before it was done.
    pub interrupted: bool,
    /// Whether the gold history this pass needed was gone (vacuumed or
    /// cleaned past it), so it served the whole gold table again.
    pub rebuilt_from_snapshot: bool,
    /// Wall time.
    pub seconds: f64,
    /// Rows written per second of wall time.
    pub rows_per_second: f64,
}

/// A connected serve stage, ready to run passes.
#[derive(Debug)]
pub struct ConnectedServeStage {
    stage: ServeStage,
    writer: Writer,
    progress: ProgressStore,
}

impl ServeStage {
    /// Connects (waiting for Cassandra with backoff), creates the serving
    /// schema if missing, and prepares the statements.
    pub async fn connect(self) -> Result<ConnectedServeStage> {
        let patience = self.writes.patience;
        let session: Arc<Session> = self.cassandra.connect_with_retry(patience).await?;
        retry_transient(patience, || schema::init(&session, &self.cassandra)).await?;
        let writer =
            retry_transient(patience, || Writer::prepare(session.clone(), &self.cassandra, self.writes)).await?;
        let progress = retry_transient(patience, || ProgressStore::prepare(session.clone(), &self.cassandra)).await?;
        Ok(ConnectedServeStage { stage: self, writer, progress })
    }
}

impl ConnectedServeStage {
    /// Applies every gold version newer than the last one applied, then stops.
    pub async fn run(&self) -> Result<ServeReport> {
        let started = Instant::now();
        let mut report = ServeReport::default();
        let Some(feed) = SessionFeed::open(&self.stage.lake).await? else {
            return Ok(finish(report, started));
        };
        let patience = self.stage.writes.patience;
        let applied = retry_transient(patience, || self.progress.load(feed.table_id())).await?;
        report.from_version = applied;
        report.to_version = applied;
        let latest = feed.version();
        let first = applied.map_or(0, |version| version + 1);
        if first > latest {
            return Ok(finish(report, started));
        }
        let step = self.stage.max_versions_per_range.max(1);
        let bar = steps_bar(0, "serve", self.stage.show_progress);
        let retention = Retention::new(self.stage.clock.now());
        let mut from = first;
        let mut latest = latest;
        while from <= latest {
            let to = (from + step - 1).min(latest);
            bar.set_message(format!("gold versions {from}..={to}"));
            let changes = match feed.changes(from, to).await {
                Ok(changes) => changes,
                Err(LakeError::HistoryGone { version, missing, .. }) => {
                    // The versions from `from` on are gone (vacuumed or
                    // cleaned past this reader): serve the whole gold table
                    // as it is now instead, never skip them.
                    warn!(from, version, %missing, "the gold history this serve needs is gone: serving the whole gold table again");
                    match self.serve_snapshot(feed.table_id(), &retention, &bar, &mut report).await? {
                        Some(served) => {
                            latest = latest.max(served);
                            from = served + 1;
                            continue;
                        }
                        None => break,
                    }
                }
                Err(error) => return Err(error.into()),
            };
            if !self.serve_changes(changes, &retention, &bar, &mut report).await? {
                break;
            }
            crash::point(crash::SERVE_BEFORE_PROGRESS);
            retry_transient(patience, || self.progress.save(feed.table_id(), to)).await?;
            report.ranges += 1;
            report.to_version = Some(to);
            from = to + 1;
        }
        bar.finish_and_clear();
        Ok(finish(report, started))
    }

    /// Writes the rows of `changes` (and deletes their stale rows); false
    /// when a crash-test budget interrupted the writes.
    async fn serve_changes(
        &self,
        changes: Vec<SessionChange>,
        retention: &Retention,
        bar: &Progress,
        report: &mut ServeReport,
    ) -> Result<bool> {
        let mut started_rows = Vec::with_capacity(changes.len());
        let mut completed_rows = Vec::with_capacity(changes.len());
        let mut stale = StaleRows::default();
        for change in &changes {
            let rows = rows_for(&change.image, retention);
            started_rows.extend(rows.started);
            completed_rows.extend(rows.completed);
            report.expired_rows += rows.expired;
            let earlier = stale_rows(&change.image, &change.earlier);
            stale.started.extend(earlier.started);
            stale.completed.extend(earlier.completed);
        }
        let sessions = changes.len() as u64;
        drop(changes);
        let stale_count = (stale.started.len() + stale.completed.len()) as u64;
        bar.inc_length((started_rows.len() + completed_rows.len()) as u64 + stale_count);
        let outcome = self.writer.write(&mut started_rows, &mut completed_rows, &stale, &|rows| bar.inc(rows)).await?;
        report.requests += outcome.requests;
        report.waits += outcome.waits;
        if outcome.interrupted {
            report.interrupted = true;
            return Ok(false);
        }
        report.sessions += sessions;
        report.started_rows += started_rows.len() as u64;
        report.completed_rows += completed_rows.len() as u64;
        report.stale_rows_deleted += stale_count;
        info!(started = started_rows.len(), completed = completed_rows.len(), "served gold sessions");
        Ok(true)
    }

    /// Serves the whole gold table at its latest version, one date
    /// partition at a time, then records that version as applied. Returns
    /// it (`None` when interrupted). Rows served for images inside the lost
    /// versions that later moved (a start that became earlier) cannot be
    /// found to delete: they stay until their TTL (`db reset` and a new
    /// `serve` give a clean state).
    async fn serve_snapshot(
        &self,
        table_id: &str,
        retention: &Retention,
        bar: &Progress,
        report: &mut ServeReport,
    ) -> Result<Option<i64>> {
        let Some(snapshot) = GoldSnapshot::open(&self.stage.lake).await? else { return Ok(None) };
        for &day in snapshot.days() {
            let changes = snapshot.read_day(day).await?;
            if !self.serve_changes(changes, retention, bar, report).await? {
                return Ok(None);
            }
        }
        let version = snapshot.version();
        crash::point(crash::SERVE_BEFORE_PROGRESS);
        retry_transient(self.stage.writes.patience, || self.progress.save(table_id, version)).await?;
        report.ranges += 1;
        report.rebuilt_from_snapshot = true;
        report.to_version = Some(version);
        Ok(Some(version))
    }
}

fn finish(mut report: ServeReport, started: Instant) -> ServeReport {
    report.seconds = started.elapsed().as_secs_f64();
    let rows = (report.started_rows + report.completed_rows) as f64;
    report.rows_per_second = if report.seconds > 0.0 { rows / report.seconds } else { 0.0 };
    report
}
