//! Making a commit durable on a local lake: fsync of the files it added,
//! of its commit file, and of the folders whose entries changed.
//!
//! delta-rs writes data files, then renames a temporary commit file into
//! `_delta_log/<version>.json`, without fsync. Until the page cache is
//! flushed, a power loss can take the commit back: an acknowledgement must
//! wait for this.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use url::Url;

use crate::error::{LakeError, Result};
use crate::schema::RAW;

/// Fsyncs version `version` of the table in `table_dir` (at `table_url`).
pub(super) async fn sync_commit(table_dir: PathBuf, table_url: Url, version: i64) -> Result<()> {
    tokio::task::spawn_blocking(move || sync_commit_blocking(&table_dir, &table_url, version))
        .await
        .map_err(|join| LakeError::Unexpected { table: RAW.name, message: format!("fsync task failed: {join}") })?
}

fn sync_commit_blocking(table_dir: &Path, table_url: &Url, version: i64) -> Result<()> {
    let log_dir = table_dir.join("_delta_log");
    let commit_file = log_dir.join(format!("{version:020}.json"));
    let commit = std::fs::read_to_string(&commit_file).map_err(LakeError::io("reading", &commit_file))?;
    let mut folders = BTreeSet::from([table_dir.to_path_buf(), log_dir]);
    for line in commit.lines().filter(|line| !line.trim().is_empty()) {
        let action: serde_json::Value = serde_json::from_str(line).map_err(|error| LakeError::Unexpected {
            table: RAW.name,
            message: format!("{} holds a line that is not JSON: {error}", commit_file.display()),
        })?;
        // Data files (`add`) and change-data files (`cdc`) of this commit.
        for kind in ["add", "cdc"] {
            let Some(relative) = action.get(kind).and_then(|file| file.get("path")).and_then(|path| path.as_str())
            else {
                continue;
            };
            let file = data_file(table_url, relative)?;
            sync_path(&file)?;
            // New partition folders are entries of their parents.
            folders.extend(
                file.ancestors().skip(1).take_while(|folder| folder.starts_with(table_dir)).map(Path::to_path_buf),
            );
        }
    }
    sync_path(&commit_file)?;
    // Children first, so a folder's entry is durable after its content.
    for folder in folders.iter().rev() {
        sync_path(folder)?;
    }
    Ok(())
}

/// The local path of a file the log names (relative and percent-encoded,
/// or an absolute URL).
fn data_file(table_url: &Url, path: &str) -> Result<PathBuf> {
    let unusable = |reason: String| LakeError::Unexpected {
        table: RAW.name,
        message: format!("the log names a file {path:?} that is not a local path: {reason}"),
    };
    let url = table_url.join(path).map_err(|error| unusable(error.to_string()))?;
    url.to_file_path().map_err(|()| unusable(format!("{url} is not a file URL")))
}

/// `fsync` of a file or a folder (opened read-only, which Linux allows).
fn sync_path(path: &Path) -> Result<()> {
    File::open(path).and_then(|file| file.sync_all()).map_err(LakeError::io("syncing", path))
}
