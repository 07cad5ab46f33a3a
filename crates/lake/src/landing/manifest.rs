//! `_manifest.jsonl`: one JSON line per landed file (sha256, size, source,
//! time). A file counts as landed only once its line is here, so a crash
//! between the rename and the append leaves a file that the next ingest of
//! the same bytes simply records.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{LakeError, Result};

/// File name of the manifest inside the landing folder.
pub const MANIFEST_FILE: &str = "_manifest.jsonl";

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

/// The manifest of a landing folder.
#[derive(Debug, Clone)]
pub struct Manifest {
    path: PathBuf,
}

impl Manifest {
    /// The manifest of `landing_dir`.
    pub fn in_dir(landing_dir: &Path) -> Self {
        Self { path: landing_dir.join(MANIFEST_FILE) }
    }

    /// All entries, in landing order; empty when nothing landed yet.
    pub fn entries(&self) -> Result<Vec<ManifestEntry>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(LakeError::io("reading", &self.path)(error)),
        };
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(entry) => entries.push(entry),
                // A torn last line (crash mid-append) is not an entry: the file
                // it names will be recorded again by the next ingest.
                Err(_) if index + 1 == text.lines().count() && !text.ends_with('\n') => {}
                Err(error) => {
                    return Err(LakeError::Manifest {
                        path: self.path.clone(),
                        line: index + 1,
                        message: error.to_string(),
                    });
                }
            }
        }
        Ok(entries)
    }

    /// Appends an entry durably (written and synced before returning).
    pub fn append(&self, entry: &ManifestEntry) -> Result<()> {
        let mut line = serde_json::to_string(entry).expect("entry serializes");
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(LakeError::io("opening", &self.path))?;
        // A torn line from an earlier crash must not swallow this one.
        if file.metadata().map(|meta| meta.len()).unwrap_or(0) > 0 {
            let existing = std::fs::read(&self.path).map_err(LakeError::io("reading", &self.path))?;
            if existing.last() != Some(&b'\n') {
                line.insert(0, '\n');
            }
        }
        file.write_all(line.as_bytes()).map_err(LakeError::io("writing", &self.path))?;
        file.sync_all().map_err(LakeError::io("syncing", &self.path))
    }
}
