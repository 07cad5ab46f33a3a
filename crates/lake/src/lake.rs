//! Where the zones live under the lake root, and opening their tables.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::{DeltaTable, DeltaTableError};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use sessionlake_model::tables;

use crate::error::{LakeError, Result};
use crate::schema::TableSpec;

/// The lake root directory and the locations derived from it.
#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
}

impl Lake {
    /// A lake rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The landing zone folder.
    pub fn landing_dir(&self) -> PathBuf {
        self.root.join(tables::LANDING_DIR)
    }

    /// The folder of a table.
    pub fn table_dir(&self, spec: &TableSpec) -> PathBuf {
        self.root.join(spec.dir)
    }

    /// The lake as an object store, rooted at the lake root (created if
    /// missing): locations are relative to the root (`raw/…/r_session_events`).
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        std::fs::create_dir_all(&self.root).map_err(LakeError::io("creating", &self.root))?;
        let store = LocalFileSystem::new_with_prefix(&self.root).map_err(|error| LakeError::Store {
            action: "opening",
            location: self.root.display().to_string(),
            source: Box::new(error),
        })?;
        Ok(Arc::new(store))
    }

    /// Opens a table, creating it (empty, with its schema, partitioning and
    /// properties) when it does not exist yet.
    pub async fn open_or_create(&self, spec: &TableSpec) -> Result<DeltaTable> {
        let dir = self.table_dir(spec);
        std::fs::create_dir_all(&dir).map_err(LakeError::io("creating", &dir))?;
        if let Some(table) = self.open(spec).await? {
            return Ok(table);
        }
        let url = table_url(&dir)?;
        let table = DeltaTable::try_from_url(url).await.map_err(LakeError::delta(spec.name))?;
        match spec.create(table).await {
            Ok(table) => Ok(table),
            // Another process created it between the look and the create
            // (found by the torture suite: two API processes starting on an
            // empty lake); its table is the one to use.
            Err(error) => self.open(spec).await?.ok_or(error),
        }
    }

    /// Opens an existing table; `None` when it has not been created yet.
    pub async fn open(&self, spec: &TableSpec) -> Result<Option<DeltaTable>> {
        let dir = self.table_dir(spec);
        if !dir.join("_delta_log").is_dir() {
            return Ok(None);
        }
        let url = table_url(&dir)?;
        match deltalake::open_table(url).await {
            Ok(table) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(error) => Err(LakeError::delta(spec.name)(error)),
        }
    }
}

fn table_url(dir: &Path) -> Result<url::Url> {
    let absolute = std::path::absolute(dir).map_err(LakeError::io("resolving", dir))?;
    url::Url::from_directory_path(&absolute).map_err(|()| LakeError::Unexpected {
        table: "lake",
        message: format!("{} is not a usable directory path", absolute.display()),
    })
}
