//! Table upkeep (`sessionlake maintain`): per table, compact small files
//! (OPTIMIZE), vacuum files removed longer ago than a retention, write a
//! checkpoint and clean old log entries — never removing what a lagging
//! reader of the change feed still needs.
//!
//! ```text
//!  per table (r_session_events, r_session_events_rejected, uc_delta_session_events):
//!    reader position   raw: gold's `sessionlake-sessions` marker; gold: serve's progress (given by the caller)
//!         │            → the first version the reader still needs: `kept_from`
//!    compact           partitions with >= min_files_to_compact small files, OPTIMIZE under the table's
//!         │            compaction lease (raw: the live-ingest compaction path); dataChange = false
//!    vacuum            tombstones older than the retention, except files that the change feed of
//!         │            versions >= kept_from reads (added or removed with dataChange = true there)
//!    checkpoint        at the latest version
//!    clean the log     entries older than the log retention and before a checkpoint <= kept_from
//! ```
//!
//! The reader guarantee: the change feed of every version a reader has not
//! applied yet stays readable (its log entries and the files it reads are
//! kept, whatever the retention). Where that guarantee is turned off
//! ([`MaintainSettings::protect_readers`] false) or the position is unknown
//! (serve's progress unreadable: the gold history is then kept within the
//! retention only), a reader that finds its history gone gets
//! [`LakeError::HistoryGone`] and rebuilds
//! from a snapshot ([`crate::rebuild`]) instead of skipping data.

mod compact;
mod history;
mod vacuum;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use sessionlake_model::tables::SESSIONS_APP_ID;
use tracing::info;

use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::schema::{RAW, REJECTED, SESSIONS, TableSpec};
use crate::txn;

/// How `maintain` treats the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintainSettings {
    /// Files removed from a table longer ago than this are deleted
    /// (default 168 h, Delta's own default). Versions newer than it stay
    /// readable by time travel. The table property
    /// `delta.deletedFileRetentionDuration` is not consulted: this setting
    /// is the rule (0 deletes every unneeded file at once: tests, idle lakes).
    pub retention: Duration,
    /// Log entries older than this are removed (default 720 h, Delta's
    /// `delta.logRetentionDuration` default), never at or after a reader's
    /// position, and only before a checkpoint.
    pub log_retention: Duration,
    /// Target size of compacted files in bytes (default 64 MiB).
    pub target_file_size: u64,
    /// A partition is compacted when it holds at least this many files
    /// smaller than the target (default 4; at least 2).
    pub min_files_to_compact: usize,
    /// Write a checkpoint at the latest version (default true).
    pub checkpoint: bool,
    /// Report what would be done, change nothing (default false).
    pub dry_run: bool,
    /// Keep what lagging readers still need (default true). False removes
    /// it too: those readers then find [`LakeError::HistoryGone`] and
    /// rebuild from a snapshot.
    pub protect_readers: bool,
    /// How many times a compaction that lost a commit race is tried again.
    pub max_conflict_retries: u32,
}

impl Default for MaintainSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(168 * 3600),
            log_retention: Duration::from_secs(720 * 3600),
            target_file_size: 64 << 20,
            min_files_to_compact: 4,
            checkpoint: true,
            dry_run: false,
            protect_readers: true,
            max_conflict_retries: 10,
        }
    }
}

/// Where a reader of a table's change feed is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderPosition {
    /// It has applied every version up to this one; `None`: none yet (it
    /// reads the change feed from version 0).
    Applied(Option<i64>),
    /// Not known (why): the table's history is kept within the retention only.
    Unknown(String),
}

impl ReaderPosition {
    /// The first version the reader still needs, if known.
    fn needs_from(&self) -> Option<u64> {
        match self {
            ReaderPosition::Applied(applied) => Some(applied.map_or(0, |version| (version + 1).max(0) as u64)),
            ReaderPosition::Unknown(_) => None,
        }
    }
}

/// A maintenance pass over the lake's tables.
#[derive(Debug, Clone)]
pub struct Maintain {
    /// The lake.
    pub lake: Lake,
    /// What to do.
    pub settings: MaintainSettings,
    /// Where `serve` is in the gold table (read by the caller from
    /// Cassandra's `serve_progress`). The raw table's reader, `sessions`,
    /// is read from the gold table itself.
    pub serve_position: ReaderPosition,
}

/// What maintenance did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableReport {
    /// The table's version before and after.
    pub version_before: i64,
    /// The table's version after (compaction and vacuum commit).
    pub version_after: i64,
    /// Data files of the latest snapshot, before.
    pub files_before: u64,
    /// Data files of the latest snapshot, after.
    pub files_after: u64,
    /// How the compaction went: `compacted`, `nothing to compact`,
    /// `would compact` (dry run), or why it was skipped.
    pub compaction: String,
    /// Partitions compacted (or that would be).
    pub partitions_compacted: u64,
    /// Small files replaced by compacted ones (or that would be).
    pub files_compacted: u64,
    /// Compacted files written.
    pub files_written: u64,
    /// Unreferenced files deleted by the vacuum (or that would be).
    pub files_removed: u64,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Files the vacuum kept past the retention because a lagging reader's
    /// change feed reads them.
    pub files_kept_for_reader: u64,
    /// Change-data files (`_change_data/`) deleted: written longer ago than
    /// the retention and read by no protected reader's change feed (or
    /// that would be).
    pub change_files_removed: u64,
    /// Their bytes.
    pub change_bytes_freed: u64,
    /// The latest checkpoint after this pass.
    pub checkpoint_version: Option<i64>,
    /// Log entries (commits and checkpoints) removed (or that would be).
    pub log_entries_removed: u64,
    /// The oldest commit left in the log.
    pub oldest_log_version: Option<i64>,
    /// Who reads this table's change feed (`sessions`, `serve`), if anyone.
    pub reader: Option<String>,
    /// The last version that reader applied (`None`: none, or unknown).
    pub reader_applied: Option<i64>,
    /// The first version kept for that reader: its log entries and the
    /// files its change feed reads are kept from here on.
    pub kept_for_reader_from: Option<i64>,
    /// Anything to know about the reader (position unknown, not protected,
    /// already behind the history).
    pub reader_note: Option<String>,
}

/// What a maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct MaintainReport {
    /// Whether nothing was changed (dry run).
    pub dry_run: bool,
    /// Per table that exists, by name.
    pub tables: BTreeMap<&'static str, TableReport>,
    /// Wall time.
    pub seconds: f64,
}

/// Who reads a table's change feed, and from where.
struct Reader {
    name: &'static str,
    position: ReaderPosition,
}

impl Maintain {
    /// Maintains every table that exists.
    pub async fn run(&self) -> Result<MaintainReport> {
        let started = Instant::now();
        let mut report = MaintainReport { dry_run: self.settings.dry_run, ..MaintainReport::default() };
        // The readers' positions are read first: they only move forward
        // while maintenance runs, so an early look keeps more, never less.
        let sessions_position = self.sessions_position().await?;
        for spec in [RAW, REJECTED, SESSIONS] {
            let reader = if spec.name == RAW.name {
                Some(Reader { name: "sessions", position: sessions_position.clone() })
            } else if spec.name == SESSIONS.name {
                Some(Reader { name: "serve", position: self.serve_position.clone() })
            } else {
                None
            };
            let Some(table) = self.lake.open(&spec).await? else { continue };
            let table_report = self.maintain_table(spec, table, reader).await?;
            info!(table = spec.name, report = ?table_report, "maintained table");
            report.tables.insert(spec.name, table_report);
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The last raw version the sessions stage folded into gold.
    async fn sessions_position(&self) -> Result<ReaderPosition> {
        let Some(gold) = self.lake.open(&SESSIONS).await? else { return Ok(ReaderPosition::Applied(None)) };
        Ok(ReaderPosition::Applied(txn::applied_version(&gold, SESSIONS.name, SESSIONS_APP_ID).await?))
    }

    async fn maintain_table(&self, spec: TableSpec, table: DeltaTable, reader: Option<Reader>) -> Result<TableReport> {
        let settings = &self.settings;
        let mut report = TableReport {
            version_before: version_of(&table),
            files_before: file_count(&table, spec)?,
            ..TableReport::default()
        };
        let kept_from = match &reader {
            None => None,
            Some(reader) => {
                report.reader = Some(reader.name.to_string());
                if let ReaderPosition::Applied(applied) = &reader.position {
                    report.reader_applied = *applied;
                }
                match (&reader.position, settings.protect_readers) {
                    (_, false) => {
                        report.reader_note =
                            Some(format!("not protected: {} finds any gap and rebuilds from a snapshot", reader.name));
                        None
                    }
                    (ReaderPosition::Unknown(why), true) => {
                        report.reader_note =
                            Some(format!("position unknown ({why}): history kept within the retention only"));
                        None
                    }
                    (position, true) => position.needs_from(),
                }
            }
        };
        report.kept_for_reader_from = kept_from.map(|version| version as i64);

        let compaction = compact::compact(&self.lake, spec, &table, settings).await?;
        report.compaction = compaction.status;
        report.partitions_compacted = compaction.partitions;
        report.files_compacted = compaction.files_removed;
        report.files_written = compaction.files_added;

        let table = reopen(&self.lake, spec).await?;
        let protected = match kept_from {
            Some(from) => {
                let protected = history::read_protected(&table, spec, from).await?;
                if let Some(missing) = protected.first_missing {
                    report.reader_note = Some(format!(
                        "already behind the history (log entry {missing} is gone): it rebuilds from a snapshot"
                    ));
                }
                protected.paths
            }
            None => Default::default(),
        };
        let vacuumed = vacuum::vacuum(table, spec, &protected, settings).await?;
        report.files_removed = vacuumed.files_removed;
        report.bytes_freed = vacuumed.bytes_freed;
        report.files_kept_for_reader = vacuumed.files_kept_for_reader;
        report.change_files_removed = vacuumed.change_files_removed;
        report.change_bytes_freed = vacuumed.change_bytes_freed;

        let table = reopen(&self.lake, spec).await?;
        let log = history::checkpoint_and_clean(&table, spec, kept_from, settings).await?;
        report.checkpoint_version = log.checkpoint_version;
        report.log_entries_removed = log.entries_removed;
        report.oldest_log_version = log.oldest_commit;

        let table = reopen(&self.lake, spec).await?;
        report.version_after = version_of(&table);
        report.files_after = file_count(&table, spec)?;
        Ok(report)
    }
}

async fn reopen(lake: &Lake, spec: TableSpec) -> Result<DeltaTable> {
    lake.open(&spec)
        .await?
        .ok_or_else(|| LakeError::Unexpected { table: spec.name, message: "the table disappeared".to_string() })
}

fn version_of(table: &DeltaTable) -> i64 {
    table.version().map_or(-1, |version| version as i64)
}

fn file_count(table: &DeltaTable, spec: TableSpec) -> Result<u64> {
    Ok(table.snapshot().map_err(LakeError::delta(spec.name))?.log_data().num_files() as u64)
}
