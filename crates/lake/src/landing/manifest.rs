//! The landing manifest: one small JSON object per landed file (sha256,
//! size, source, time) in `_manifest/` of the landing zone, named after the
//! landed file and written with a conditional put (create if absent), so
//! two processes can never record the same name twice, on local disk or an
//! object store. A file counts as landed only once its object is there, so
//! a crash between placing the bytes and recording them leaves a file that
//! the next ingest of the same bytes simply records.
//!
//! Lakes written before this layout have `_manifest.jsonl` (one line per
//! file): it is still read, never written.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sessionlake_model::tables;

use crate::error::{LakeError, Result};
use crate::lake::Lake;

/// The folder of manifest objects inside the landing zone.
pub const MANIFEST_DIR: &str = "_manifest";

/// The manifest file of lakes written before [`MANIFEST_DIR`] (read only).
pub const LEGACY_MANIFEST_FILE: &str = "_manifest.jsonl";

/// One landed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// File name inside the landing folder.
    pub file: String,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Where it came from (URL or path, as given).
    pub source: String,
    /// When it landed.
    pub landed_at: DateTime<Utc>,
}

/// What [`Manifest::record`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The entry is now in the manifest.
    Created,
    /// The name was recorded already, with this entry.
    Existing(ManifestEntry),
}

/// The manifest of a lake's landing zone.
#[derive(Debug, Clone)]
pub struct Manifest {
    store: Arc<dyn ObjectStore>,
    folder: Path,
    legacy: Path,
}

impl Manifest {
    /// The manifest of `lake`'s landing zone.
    pub fn of(lake: &Lake) -> Result<Self> {
        let landing = Path::from(tables::LANDING_DIR);
        Ok(Self {
            store: lake.store()?,
            folder: landing.clone().join(MANIFEST_DIR),
            legacy: landing.join(LEGACY_MANIFEST_FILE),
        })
    }

    /// All entries, in landing order (time, then name); empty when nothing
    /// landed yet.
    pub async fn entries(&self) -> Result<Vec<ManifestEntry>> {
        let mut by_file: BTreeMap<String, ManifestEntry> = BTreeMap::new();
        for entry in self.legacy_entries().await? {
            by_file.entry(entry.file.clone()).or_insert(entry);
        }
        let objects: Vec<_> = self
            .store
            .list(Some(&self.folder))
            .try_collect()
            .await
            .map_err(LakeError::store("listing", &self.folder))?;
        for object in objects {
            if object.location.extension() != Some("json") {
                continue; // a put's staging file, never an entry
            }
            let entry = self.read(&object.location).await?;
            by_file.insert(entry.file.clone(), entry);
        }
        let mut entries: Vec<ManifestEntry> = by_file.into_values().collect();
        entries.sort_by(|a, b| a.landed_at.cmp(&b.landed_at).then_with(|| a.file.cmp(&b.file)));
        Ok(entries)
    }

    /// Records `entry` under its file name, unless that name is recorded
    /// already (then that entry is returned, whatever its bytes).
    pub async fn record(&self, entry: &ManifestEntry) -> Result<Recorded> {
        if let Some(existing) = self.legacy_entries().await?.into_iter().find(|old| old.file == entry.file) {
            return Ok(Recorded::Existing(existing));
        }
        let location = self.folder.clone().join(format!("{}.json", entry.file));
        let payload = PutPayload::from(serde_json::to_vec(entry).expect("an entry serializes"));
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.store.put_opts(&location, payload, options).await {
            Ok(_) => Ok(Recorded::Created),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(Recorded::Existing(self.read(&location).await?))
            }
            Err(error) => Err(LakeError::store("creating", &location)(error)),
        }
    }

    async fn read(&self, location: &Path) -> Result<ManifestEntry> {
        let object = self.store.get(location).await.map_err(LakeError::store("reading", location))?;
        let bytes = object.bytes().await.map_err(LakeError::store("reading", location))?;
        serde_json::from_slice(&bytes).map_err(|error| LakeError::Manifest {
            path: location.to_string().into(),
            line: 1,
            message: error.to_string(),
        })
    }

    /// The entries of `_manifest.jsonl`, if the lake has one.
    async fn legacy_entries(&self) -> Result<Vec<ManifestEntry>> {
        let text = match self.store.get(&self.legacy).await {
            Ok(object) => object.bytes().await.map_err(LakeError::store("reading", &self.legacy))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(LakeError::store("reading", &self.legacy)(error)),
        };
        let text = String::from_utf8_lossy(&text);
        let mut entries = Vec::new();
        let lines = text.lines().count();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(entry) => entries.push(entry),
                // A torn last line (crash mid-append) is not an entry: the file
                // it names is recorded again by the next ingest.
                Err(_) if index + 1 == lines && !text.ends_with('\n') => {}
                Err(error) => {
                    return Err(LakeError::Manifest {
                        path: self.legacy.to_string().into(),
                        line: index + 1,
                        message: error.to_string(),
                    });
                }
            }
        }
        Ok(entries)
    }
}
