//! A landed file as a local file that `raw` can read, its bytes checked
//! against the manifest's SHA-256 first: on a local lake the file itself,
//! on an object store a download into a temp file (removed when dropped).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use object_store::ObjectStoreExt;
use sessionlake_model::tables;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::ManifestEntry;
use super::ingest::sha256_of_file;
use crate::error::{LakeError, Result};
use crate::lake::Lake;

/// A landed file on the local disk.
#[derive(Debug)]
pub struct LocalCopy {
    path: PathBuf,
    /// The downloaded copy of a remote file, removed on drop.
    _download: Option<tempfile::TempPath>,
}

impl LocalCopy {
    /// Where to read it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The landed file of `entry`, checked: other bytes than the manifest's
/// (changed by hand, a bad disk, a partial copy) or missing bytes are
/// [`LakeError::Corrupt`], so the file is quarantined, never trusted.
pub async fn local_copy(lake: &Lake, entry: &ManifestEntry) -> Result<LocalCopy> {
    let (path, download, found) = match lake.local_root() {
        Some(_) => {
            let path = lake.landing_dir().join(&entry.file);
            let owned = path.clone();
            let found = tokio::task::spawn_blocking(move || sha256_of_file(&owned)).await.map_err(|join| {
                LakeError::Unexpected { table: "landing", message: format!("hashing task failed: {join}") }
            })?;
            let found = match found {
                Err(LakeError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
                other => Some(other?),
            };
            (path, None, found)
        }
        None => {
            let (download, found) = download(lake, &entry.file).await?;
            (download.to_path_buf(), Some(download), found)
        }
    };
    let corrupt = |message: String| LakeError::Corrupt { path: path.clone(), message };
    match found {
        None => Err(corrupt("its bytes are missing from the landing zone".to_string())),
        Some(found) if found != entry.sha256 => {
            Err(corrupt(format!("its sha256 is {found}, not {} as when it landed", entry.sha256)))
        }
        Some(_) => Ok(LocalCopy { path, _download: download }),
    }
}

/// Downloads a landed object into a temp file, hashing it on the way;
/// `None` for the hash when the object is missing.
async fn download(lake: &Lake, file: &str) -> Result<(tempfile::TempPath, Option<String>)> {
    let store = lake.store()?;
    let location = object_store::path::Path::from(tables::LANDING_DIR).join(file);
    let temp = tempfile::Builder::new()
        .prefix(".landed-")
        .tempfile()
        .map_err(LakeError::io("creating a temp file in", std::env::temp_dir()))?
        .into_temp_path();
    let object = match store.get(&location).await {
        Ok(object) => object,
        Err(object_store::Error::NotFound { .. }) => return Ok((temp, None)),
        Err(error) => return Err(LakeError::store("reading", &location)(error)),
    };
    let mut writer = tokio::fs::File::create(&temp).await.map_err(LakeError::io("writing", temp.to_path_buf()))?;
    let mut hasher = Sha256::new();
    let mut stream = object.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(LakeError::store("reading", &location))?;
        hasher.update(&chunk);
        writer.write_all(&chunk).await.map_err(LakeError::io("writing", temp.to_path_buf()))?;
    }
    writer.flush().await.map_err(LakeError::io("writing", temp.to_path_buf()))?;
    Ok((temp, Some(hex::encode(hasher.finalize()))))
}
