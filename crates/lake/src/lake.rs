//! Where the lake lives (a local folder or an object-store URL), where the
//! zones live under its root, and opening their tables.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3CopyIfNotExists};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use sessionlake_model::tables;
use url::Url;

use crate::error::{LakeError, Result};
use crate::schema::TableSpec;

/// The lake root and the locations derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lake {
    location: Location,
    /// Object-store settings given in code (`aws_access_key_id`, …), over
    /// the `AWS_*` variables.
    options: BTreeMap<String, String>,
    /// The store [`Lake::store`] built, shared by clones (one connection
    /// pool per lake, not per call).
    store: StoreCache,
}

/// A lazily built store; not part of a lake's identity.
#[derive(Clone, Default)]
struct StoreCache(Arc<OnceLock<Arc<dyn ObjectStore>>>);

impl PartialEq for StoreCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for StoreCache {}

impl std::fmt::Debug for StoreCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(if self.0.get().is_some() { "StoreCache(built)" } else { "StoreCache(empty)" })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// A folder on this machine.
    Local(PathBuf),
    /// An S3 (or S3-compatible) URL, `s3://bucket/prefix/`, always ending in `/`.
    S3(Url),
}

impl Lake {
    /// A lake in the local folder `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { location: Location::Local(root.into()), options: BTreeMap::new(), store: StoreCache::default() }
    }

    /// A lake at `text`: `s3://bucket[/prefix]` (endpoint and credentials
    /// from the standard `AWS_*` variables), `file:///path`, or a path.
    pub fn parse(text: &str) -> Result<Self> {
        let Some((scheme, _)) = text.split_once("://") else { return Ok(Self::new(text)) };
        let unusable = |why: String| LakeError::Location { location: text.to_string(), why };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let url = Url::parse(text).map_err(|error| unusable(error.to_string()))?;
                let path = url.to_file_path().map_err(|()| unusable("not a local path".to_string()))?;
                Ok(Self::new(path))
            }
            "s3" | "s3a" => {
                let mut url = Url::parse(text).map_err(|error| unusable(error.to_string()))?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(unusable("it names no bucket (s3://bucket/prefix)".to_string()));
                }
                url.set_query(None);
                url.set_fragment(None);
                if !url.path().ends_with('/') {
                    url.set_path(&format!("{}/", url.path()));
                }
                Ok(Self { location: Location::S3(url), options: BTreeMap::new(), store: StoreCache::default() })
            }
            other => Err(unusable(format!("{other}:// is not supported (a path, file:// or s3://)"))),
        }
    }

    /// The lake with object-store settings that take precedence over the
    /// `AWS_*` variables (keys as deltalake and object_store take them,
    /// e.g. `AWS_ENDPOINT_URL`, `AWS_SECRET_ACCESS_KEY`; any case).
    pub fn with_storage_options(mut self, options: impl IntoIterator<Item = (String, String)>) -> Self {
        self.options.extend(options.into_iter().map(|(key, value)| (key.to_ascii_uppercase(), value)));
        self.store = StoreCache::default();
        self
    }

    /// The root folder of a local lake; `None` on an object store.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.location {
            Location::Local(root) => Some(root),
            Location::S3(_) => None,
        }
    }

    /// The lake root as given (a path or a URL), for messages.
    pub fn display(&self) -> String {
        match &self.location {
            Location::Local(root) => root.display().to_string(),
            Location::S3(url) => url.to_string(),
        }
    }

    /// The landing zone folder of a local lake.
    ///
    /// # Panics
    /// On an object-store lake (no local folder): for local tools and tests.
    pub fn landing_dir(&self) -> PathBuf {
        self.local_path(tables::LANDING_DIR)
    }

    /// The folder of a table of a local lake.
    ///
    /// # Panics
    /// On an object-store lake (no local folder): for local tools and tests.
    pub fn table_dir(&self, spec: &TableSpec) -> PathBuf {
        self.local_path(spec.dir)
    }

    fn local_path(&self, relative: &str) -> PathBuf {
        match &self.location {
            Location::Local(root) => root.join(relative),
            Location::S3(url) => panic!("{url} is on an object store: {relative} has no local path"),
        }
    }

    /// The lake as an object store, rooted at the lake root: locations are
    /// relative to it (`raw/assignment_data/r_session_events/…`). A local
    /// root is created if missing.
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        if let Some(store) = self.store.0.get() {
            return Ok(Arc::clone(store));
        }
        let store = self.build_store()?;
        Ok(Arc::clone(self.store.0.get_or_init(|| store)))
    }

    fn build_store(&self) -> Result<Arc<dyn ObjectStore>> {
        let unusable = |source: object_store::Error| LakeError::Store {
            action: "opening",
            location: self.display(),
            summary: crate::error::store_summary(&source),
            source: Box::new(source),
        };
        match &self.location {
            Location::Local(root) => {
                std::fs::create_dir_all(root).map_err(LakeError::io("creating", root))?;
                Ok(Arc::new(LocalFileSystem::new_with_prefix(root).map_err(unusable)?))
            }
            Location::S3(url) => {
                let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
                for (key, value) in &self.options {
                    let key = key.to_ascii_lowercase().parse().map_err(unusable)?;
                    builder = builder.with_config(key, value);
                }
                if std::env::var_os("AWS_COPY_IF_NOT_EXISTS").is_none() {
                    // Standard S3: a multipart copy completed with If-None-Match.
                    builder = builder.with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
                }
                let bucket = builder.build().map_err(unusable)?;
                let prefix = url.path().trim_matches('/');
                if prefix.is_empty() { Ok(Arc::new(bucket)) } else { Ok(Arc::new(PrefixStore::new(bucket, prefix))) }
            }
        }
    }

    /// The URL of a table (a folder URL, ending in `/`).
    pub fn table_url(&self, spec: &TableSpec) -> Result<Url> {
        match &self.location {
            Location::Local(root) => directory_url(&root.join(spec.dir)),
            Location::S3(url) => url
                .join(&format!("{}/", spec.dir))
                .map_err(|error| LakeError::Location { location: url.to_string(), why: error.to_string() }),
        }
    }

    /// Opens a table, creating it (empty, with its schema, partitioning and
    /// properties) when it does not exist yet.
    pub async fn open_or_create(&self, spec: &TableSpec) -> Result<DeltaTable> {
        if let Location::Local(root) = &self.location {
            let dir = root.join(spec.dir);
            std::fs::create_dir_all(&dir).map_err(LakeError::io("creating", &dir))?;
        }
        if let Some(table) = self.open(spec).await? {
            return Ok(table);
        }
        let table = self.table_builder(spec)?.build().map_err(LakeError::delta(spec.name))?;
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
        if let Location::Local(root) = &self.location
            && !root.join(spec.dir).join("_delta_log").is_dir()
        {
            return Ok(None);
        }
        match self.table_builder(spec)?.load().await {
            Ok(table) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(error) if is_missing_table(&error) => Ok(None),
            Err(error) => Err(LakeError::delta(spec.name)(error)),
        }
    }
}

impl Lake {
    fn table_builder(&self, spec: &TableSpec) -> Result<DeltaTableBuilder> {
        let builder = DeltaTableBuilder::from_url(self.table_url(spec)?).map_err(LakeError::delta(spec.name))?;
        Ok(builder.with_storage_options(self.options.clone().into_iter().collect::<HashMap<_, _>>()))
    }
}

/// Whether opening failed because the table has no log yet (an object
/// store has no folders to look for first).
fn is_missing_table(error: &DeltaTableError) -> bool {
    matches!(error, DeltaTableError::InvalidTableLocation(_))
        || error.to_string().contains("No files in log segment")
        || error.to_string().contains("not a Delta table")
}

fn directory_url(dir: &Path) -> Result<Url> {
    let absolute = std::path::absolute(dir).map_err(LakeError::io("resolving", dir))?;
    Url::from_directory_path(&absolute).map_err(|()| LakeError::Location {
        location: absolute.display().to_string(),
        why: "not a usable directory path".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_into_folders_or_object_store_urls() {
        assert_eq!(Lake::parse("./data_lake").unwrap(), Lake::new("./data_lake"));
        assert_eq!(Lake::parse("file:///tmp/lake").unwrap(), Lake::new("/tmp/lake"));
        let s3 = Lake::parse("s3://bucket/some/prefix").unwrap();
        assert_eq!(s3.display(), "s3://bucket/some/prefix/");
        assert_eq!(s3.local_root(), None);
        assert_eq!(
            s3.table_url(&crate::schema::RAW).unwrap().as_str(),
            "s3://bucket/some/prefix/raw/assignment_data/r_session_events/"
        );
        assert_eq!(Lake::parse("s3://bucket").unwrap().display(), "s3://bucket/");
        for bad in ["s3:///prefix", "gs://bucket/x", "ftp://host/x"] {
            let error = Lake::parse(bad).unwrap_err().to_string();
            assert!(error.contains(bad), "{error}");
        }
    }
}
