//! Deleting data files the latest snapshot no longer references (VACUUM,
//! lite mode: the files of `remove` actions), once removed longer ago than
//! the retention — except those a lagging reader's change feed still reads.
//! Change-data files (`_change_data/`, gold's change feed) are never in a
//! snapshot, so no tombstone names them and delta-rs's lite vacuum keeps
//! them forever; they go here once written longer ago than the retention,
//! unless a lagging reader's feed reads them (as Delta's own VACUUM deletes
//! change data past the retention).
//!
//! delta-rs's vacuum decides by one instant: a tombstone older than it
//! goes. The instant is the retention's, moved back to just before the
//! oldest removal of a protected file, so no protected file is ever older
//! than it. (Files written by a writer that died before its commit are not
//! tombstones and are left alone: a full-mode vacuum would take files that
//! a writer in flight has not committed yet, with a short retention.)

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::operations::vacuum::{Clock, VacuumMode};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::MaintainSettings;
use crate::error::{LakeError, Result};
use crate::schema::TableSpec;

/// What the vacuum did.
#[derive(Debug, Default)]
pub(super) struct Vacuumed {
    pub(super) files_removed: u64,
    pub(super) bytes_freed: u64,
    pub(super) files_kept_for_reader: u64,
    pub(super) change_files_removed: u64,
    pub(super) change_bytes_freed: u64,
}

/// The vacuum's clock, fixed at the instant the plan was made: its cutoff
/// is then exactly the one computed here.
#[derive(Debug)]
struct FixedClock(i64);

impl Clock for FixedClock {
    fn current_timestamp_millis(&self) -> i64 {
        self.0
    }
}

/// Vacuums `table`, keeping the tombstoned files in `protected` (paths as
/// the log writes them).
pub(super) async fn vacuum(
    table: DeltaTable,
    spec: TableSpec,
    protected: &HashSet<String>,
    settings: &MaintainSettings,
) -> Result<Vacuumed> {
    let mut outcome = Vacuumed::default();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let retention_ms = settings.retention.as_millis().min(i64::MAX as u128) as i64;
    let snapshot = table.snapshot().map_err(LakeError::delta(spec.name))?;
    let active: HashSet<String> = snapshot.log_data().iter().map(|file| file.path().into_owned()).collect();
    let log_store = table.log_store();
    // (path, deletion time, size) of every file removed and not added back.
    let tombstones: Vec<(String, i64, u64)> = snapshot
        .all_tombstones(log_store.as_ref())
        .map_ok(|tombstone| {
            (
                tombstone.path().into_owned(),
                tombstone.deletion_timestamp().unwrap_or(0),
                tombstone.size().unwrap_or(0).max(0) as u64,
            )
        })
        .try_collect()
        .await
        .map_err(LakeError::delta(spec.name))?;
    let mut cutoff_ms = now_ms.saturating_sub(retention_ms);
    for (path, deleted_ms, _) in &tombstones {
        if protected.contains(path) && !active.contains(path) {
            cutoff_ms = cutoff_ms.min(*deleted_ms);
        }
    }
    // delta-rs deletes a tombstone whose deletion time is before the cutoff.
    let mut expired: Vec<(Path, u64)> = Vec::new();
    let mut kept_for_reader: Vec<Path> = Vec::new();
    for (path, deleted_ms, size) in &tombstones {
        if active.contains(path) {
            continue;
        }
        if *deleted_ms < cutoff_ms {
            expired.push((object_path(path), *size));
        } else if *deleted_ms < now_ms.saturating_sub(retention_ms) {
            kept_for_reader.push(object_path(path));
        }
    }
    // Tombstones outlive their files (a checkpoint keeps them for the
    // table's deletedFileRetentionDuration): count only files still there,
    // and commit no vacuum when none is.
    let store = log_store.object_store(None);
    let expired = still_there(store.as_ref(), expired).await?;
    outcome.files_kept_for_reader =
        still_there(store.as_ref(), kept_for_reader.into_iter().map(|path| (path, 0)).collect()).await?.len() as u64;
    let change_files = expired_change_files(store.as_ref(), protected, now_ms.saturating_sub(retention_ms)).await?;
    outcome.change_files_removed = change_files.len() as u64;
    outcome.change_bytes_freed = change_files.iter().map(|(_, size)| size).sum();
    if !settings.dry_run {
        delete_all(store.as_ref(), change_files).await?;
    }
    let sizes: HashMap<String, u64> = expired.into_iter().map(|(path, size)| (path.to_string(), size)).collect();
    if sizes.is_empty() {
        return Ok(outcome);
    }
    if settings.dry_run {
        outcome.files_removed = sizes.len() as u64;
        outcome.bytes_freed = sizes.values().sum();
        return Ok(outcome);
    }
    let retention = chrono::Duration::milliseconds(now_ms - cutoff_ms);
    let (_, metrics) = table
        .vacuum()
        .with_mode(VacuumMode::Lite)
        .with_retention_period(retention)
        // The retention is this setting's, not the table property's.
        .with_enforce_retention_duration(false)
        .with_clock(Arc::new(FixedClock(now_ms)))
        .await
        .map_err(LakeError::delta(spec.name))?;
    // delta-rs also lists the files that were already gone.
    let deleted: Vec<u64> = metrics.files_deleted.iter().filter_map(|path| sizes.get(path).copied()).collect();
    outcome.files_removed = deleted.len() as u64;
    outcome.bytes_freed = deleted.iter().sum();
    Ok(outcome)
}

/// The files of `files` that exist (one HEAD each, a few at a time).
async fn still_there(store: &dyn ObjectStore, files: Vec<(Path, u64)>) -> Result<Vec<(Path, u64)>> {
    let found: Vec<Option<(Path, u64)>> = futures::stream::iter(files)
        .map(|(path, size)| async move {
            match store.head(&path).await {
                Ok(_) => Ok(Some((path, size))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(error) => Err(LakeError::store("looking for", &path)(error)),
            }
        })
        .buffer_unordered(HEADS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// The change-data files (under `_change_data/`) last written before
/// `cutoff_ms` that no protected reader's feed reads, with their sizes.
async fn expired_change_files(
    store: &dyn ObjectStore,
    protected: &HashSet<String>,
    cutoff_ms: i64,
) -> Result<Vec<(Path, u64)>> {
    let prefix = Path::from(CHANGE_DATA_DIR);
    let listed: Vec<object_store::ObjectMeta> =
        store.list(Some(&prefix)).try_collect().await.map_err(LakeError::store("listing", &prefix))?;
    Ok(listed
        .into_iter()
        .filter(|meta| meta.last_modified.timestamp_millis() < cutoff_ms && !protected.contains(meta.location.as_ref()))
        .map(|meta| (meta.location, meta.size))
        .collect())
}

/// Deletes `files` (a few at a time); one already gone is not an error.
async fn delete_all(store: &dyn ObjectStore, files: Vec<(Path, u64)>) -> Result<()> {
    futures::stream::iter(files)
        .map(|(path, _)| async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(LakeError::store("deleting", &path)(error)),
            }
        })
        .buffer_unordered(HEADS_AT_ONCE)
        .try_collect()
        .await
}

/// Where Delta writes a table's change-data files.
const CHANGE_DATA_DIR: &str = "_change_data";

/// Existence checks (and deletions) in flight at once.
const HEADS_AT_ONCE: usize = 16;

/// A log path (URL-encoded) as the object store names it, as delta-rs's
/// vacuum reports deleted files.
fn object_path(log_path: &str) -> Path {
    Path::parse(log_path).unwrap_or_else(|_| Path::from(log_path))
}
