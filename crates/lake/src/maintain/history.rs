//! A table's history: what a lagging reader still needs from it, and the
//! upkeep of its log (a checkpoint, then old entries removed).

use std::collections::HashSet;

use deltalake::DeltaTable;
use deltalake::checkpoints::{cleanup_expired_logs_for, create_checkpoint};
use deltalake::logstore::LogStore;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::MaintainSettings;
use crate::error::{LakeError, Result};
use crate::schema::TableSpec;

/// Commits read at once when looking for what a reader needs.
const COMMITS_READ_AT_ONCE: usize = 16;

/// The data files that the change feed of versions `from..` reads.
#[derive(Debug, Default)]
pub(super) struct Protected {
    /// Paths as the log writes them.
    pub(super) paths: HashSet<String>,
    /// The first of those versions whose log entry is already gone: the
    /// reader is behind the history and must rebuild from a snapshot.
    pub(super) first_missing: Option<u64>,
}

/// The files a reader at `from` may still read: for the change feed of
/// versions `from..=latest`, every file added or removed with
/// `dataChange = true` by one of those commits and every change-data
/// (`cdc`) file they wrote (whatever version later
/// removes it); for the snapshots of versions `from..`, every file removed
/// after `from` (by a compaction too). A compaction committed at `from`
/// itself removes files no reader at `from` needs: a reader caught up at
/// `from - 1` lets this pass's compacted-away files go.
pub(super) async fn read_protected(table: &DeltaTable, spec: TableSpec, from: u64) -> Result<Protected> {
    let mut protected = Protected::default();
    let Some(latest) = table.version() else { return Ok(protected) };
    if from > latest {
        return Ok(protected);
    }
    let log_store = table.log_store();
    let mut commits = futures::stream::iter(from..=latest)
        .map(|version| {
            let log_store = log_store.clone();
            async move { (version, log_store.read_commit_entry(version).await) }
        })
        .buffered(COMMITS_READ_AT_ONCE);
    while let Some((version, commit)) = commits.next().await {
        let Some(bytes) = commit.map_err(LakeError::delta(spec.name))? else {
            protected.first_missing = Some(protected.first_missing.map_or(version, |first| first.min(version)));
            continue;
        };
        for line in bytes.split(|&byte| byte == b'\n').filter(|line| !line.is_empty()) {
            let action: Value = serde_json::from_slice(line).map_err(|error| LakeError::Unexpected {
                table: spec.name,
                message: format!("log entry {version} holds a line that is not JSON: {error}"),
            })?;
            for kind in ["add", "remove", "cdc"] {
                let Some(file) = action.get(kind) else { continue };
                // A commit's `cdc` files are its change feed (they carry
                // `dataChange = false`, as the protocol asks).
                let changes_data = kind == "cdc" || file.get("dataChange").and_then(Value::as_bool) == Some(true);
                let removed_after_from = kind == "remove" && version > from;
                if (changes_data || removed_after_from)
                    && let Some(path) = file.get("path").and_then(Value::as_str)
                {
                    protected.paths.insert(percent_decoded(path));
                }
            }
        }
    }
    Ok(protected)
}

/// A log path with its `%XX` escapes decoded, as delta-rs names files in
/// snapshots and tombstones.
fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// What the log's upkeep did.
#[derive(Debug, Default)]
pub(super) struct LogOutcome {
    /// The latest checkpoint afterwards.
    pub(super) checkpoint_version: Option<i64>,
    /// Entries removed (or that would be, in a dry run).
    pub(super) entries_removed: u64,
    /// The oldest commit left.
    pub(super) oldest_commit: Option<i64>,
}

/// One file of `_delta_log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LogEntry {
    pub(super) version: u64,
    pub(super) is_checkpoint: bool,
    pub(super) modified_ms: i64,
}

/// Writes a checkpoint at the latest version (unless there is one) and
/// one at `kept_from` (the first version a reader still needs), then
/// removes the log entries older than the log retention that come before
/// a checkpoint at or below `kept_from` (the latest version when there is
/// no reader).
pub(super) async fn checkpoint_and_clean(
    table: &DeltaTable,
    spec: TableSpec,
    kept_from: Option<u64>,
    settings: &MaintainSettings,
) -> Result<LogOutcome> {
    let mut outcome = LogOutcome::default();
    let Some(latest) = table.version() else { return Ok(outcome) };
    let log_store = table.log_store();
    let mut entries = list_log(log_store.as_ref(), spec).await?;
    if settings.checkpoint
        && let Some(from) = kept_from.filter(|&from| from < latest)
        && !entries.iter().any(|entry| entry.is_checkpoint && entry.version == from)
        && entries.iter().any(|entry| !entry.is_checkpoint && entry.version < from)
    {
        // A checkpoint at the reader's version lets the entries before it
        // go while the reader still needs the ones after.
        let written = settings.dry_run || checkpoint_at(table, spec, from).await;
        if written {
            let written_ms = chrono::Utc::now().timestamp_millis();
            entries.push(LogEntry { version: from, is_checkpoint: true, modified_ms: written_ms });
        }
    }
    let mut checkpoint = entries.iter().filter(|entry| entry.is_checkpoint).map(|entry| entry.version).max();
    if settings.checkpoint && checkpoint != Some(latest) {
        if !settings.dry_run {
            create_checkpoint(table, None).await.map_err(LakeError::delta(spec.name))?;
        }
        // A dry run plans with the checkpoint the real run would write.
        let written_ms = chrono::Utc::now().timestamp_millis();
        entries.push(LogEntry { version: latest, is_checkpoint: true, modified_ms: written_ms });
        checkpoint = Some(latest);
    }
    // After the checkpoint: with a log retention of 0 it is older than the
    // cutoff, like every entry before it.
    let now_ms = chrono::Utc::now().timestamp_millis();
    outcome.checkpoint_version = checkpoint.map(|version| version as i64);
    let keep_version = kept_from.map_or(latest, |from| from.min(latest));
    let cutoff_ms = now_ms.saturating_sub(settings.log_retention.as_millis().min(i64::MAX as u128) as i64);
    let planned = plan_cleanup(&entries, keep_version, cutoff_ms);
    if settings.dry_run {
        outcome.entries_removed = planned.len() as u64;
        let removed: HashSet<(u64, bool)> = planned.iter().map(|entry| (entry.version, entry.is_checkpoint)).collect();
        outcome.oldest_commit = entries
            .iter()
            .filter(|entry| !entry.is_checkpoint && !removed.contains(&(entry.version, false)))
            .map(|entry| entry.version as i64)
            .min();
        return Ok(outcome);
    }
    let removed = cleanup_expired_logs_for(keep_version, log_store.as_ref(), cutoff_ms, None)
        .await
        .map_err(LakeError::delta(spec.name))?;
    outcome.entries_removed = removed as u64;
    outcome.oldest_commit = list_log(log_store.as_ref(), spec)
        .await?
        .iter()
        .filter(|entry| !entry.is_checkpoint)
        .map(|entry| entry.version as i64)
        .min();
    Ok(outcome)
}

/// Writes a checkpoint of `table` as of `version`; false (logged) when
/// that version cannot be loaded any more (its log is already gone: the
/// reader at it rebuilds from a snapshot anyway).
async fn checkpoint_at(table: &DeltaTable, spec: TableSpec, version: u64) -> bool {
    let mut as_of = table.clone();
    let written = match as_of.load_version(version).await {
        Ok(()) => create_checkpoint(&as_of, None).await,
        Err(error) => Err(error),
    };
    if let Err(error) = &written {
        tracing::warn!(table = spec.name, version, %error, "no checkpoint at the reader's version");
    }
    written.is_ok()
}

/// The commits and checkpoints in `_delta_log`.
async fn list_log(log_store: &dyn LogStore, spec: TableSpec) -> Result<Vec<LogEntry>> {
    let objects: Vec<object_store::ObjectMeta> = log_store
        .object_store(None)
        .list(Some(log_store.log_path()))
        .try_collect()
        .await
        .map_err(|error| LakeError::delta(spec.name)(error.into()))?;
    Ok(objects
        .iter()
        .filter_map(|object| {
            let (version, is_checkpoint) = parse_log_name(object.location.filename()?)?;
            Some(LogEntry { version, is_checkpoint, modified_ms: object.last_modified.timestamp_millis() })
        })
        .collect())
}

/// `00000000000000000012.json` → (12, commit); `…12.checkpoint.parquet`
/// (or a multi-part checkpoint) → (12, checkpoint); anything else → none.
fn parse_log_name(name: &str) -> Option<(u64, bool)> {
    let (digits, rest) = name.split_at_checked(20)?;
    let version = digits.bytes().all(|byte| byte.is_ascii_digit()).then(|| digits.parse().ok())??;
    match rest {
        ".json" => Some((version, false)),
        _ if rest.starts_with(".checkpoint") && rest.ends_with(".parquet") => Some((version, true)),
        _ => None,
    }
}

/// The entries delta-rs's `cleanup_expired_logs_for(keep_version, …,
/// cutoff_ms)` removes, by its rule: `keep_version` moves down to the
/// oldest entry newer than the cutoff; the newest checkpoint at or below it
/// is the safe one; entries before it and not newer than the cutoff go.
/// Used to report a dry run.
fn plan_cleanup(entries: &[LogEntry], keep_version: u64, cutoff_ms: i64) -> Vec<LogEntry> {
    let in_retention = entries.iter().filter(|entry| entry.modified_ms >= cutoff_ms).map(|entry| entry.version).min();
    let keep_version = in_retention.map_or(keep_version, |version| version.min(keep_version));
    let Some(safe_checkpoint) = entries
        .iter()
        .filter(|entry| entry.is_checkpoint && entry.version <= keep_version)
        .map(|entry| entry.version)
        .max()
    else {
        return Vec::new();
    };
    entries.iter().filter(|entry| entry.version < safe_checkpoint && entry.modified_ms <= cutoff_ms).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: u64, is_checkpoint: bool, modified_ms: i64) -> LogEntry {
        LogEntry { version, is_checkpoint, modified_ms }
    }

    #[test]
    fn log_paths_are_compared_decoded() {
        assert_eq!(percent_decoded("EVENT_DATE=2016-11-01/part-0.parquet"), "EVENT_DATE=2016-11-01/part-0.parquet");
        assert_eq!(percent_decoded("a%20b%3Dc/%zz%2"), "a b=c/%zz%2");
    }

    #[test]
    fn log_names_parse_into_versions() {
        assert_eq!(parse_log_name("00000000000000000012.json"), Some((12, false)));
        assert_eq!(parse_log_name("00000000000000000012.checkpoint.parquet"), Some((12, true)));
        assert_eq!(parse_log_name("00000000000000000012.checkpoint.0000000001.0000000002.parquet"), Some((12, true)));
        for other in ["_last_checkpoint", "00000000000000000012.crc", "0000000000000000012.json", "x.json"] {
            assert_eq!(parse_log_name(other), None, "{other}");
        }
    }

    #[test]
    fn cleanup_stops_at_the_newest_checkpoint_at_or_below_the_kept_version() {
        // Commits 0..=9 written at 0..=9 ms, checkpoints at 3 and 7.
        let mut entries: Vec<LogEntry> = (0..10).map(|version| entry(version, false, version as i64)).collect();
        entries.push(entry(3, true, 3));
        entries.push(entry(7, true, 7));
        let versions =
            |planned: Vec<LogEntry>| planned.iter().map(|e| (e.version, e.is_checkpoint)).collect::<Vec<_>>();

        // A reader needs version 5 on: the checkpoint at 3 is the safe one.
        assert_eq!(versions(plan_cleanup(&entries, 5, 100)), vec![(0, false), (1, false), (2, false)]);
        // No reader: everything before the checkpoint at 7.
        let all_before_seven = plan_cleanup(&entries, 9, 100);
        assert_eq!(all_before_seven.len(), 8, "commits 0..=6 and the checkpoint at 3");
        // The log retention keeps entries newer than the cutoff (2 ms): keep
        // version moves down to 2, below every checkpoint: nothing goes.
        assert!(plan_cleanup(&entries, 9, 2).is_empty());
        // No checkpoint at or below the kept version: nothing goes.
        assert!(plan_cleanup(&entries, 2, 100).is_empty());
    }
}
