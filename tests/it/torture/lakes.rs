//! Where a test's lake is: a local directory, or a prefix of an S3 server
//! the test started. The same scenarios run on both; only this differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sessionlake_lake::Lake;
use sessionlake_lake::testing::S3Server;
use sessionlake_model::tables;

use crate::support::sessionlake;

/// A lake location and what reaches it.
#[derive(Debug, Clone)]
pub struct TestLake {
    /// What `--lake` gets: a path or `s3://bucket/prefix`.
    location: String,
    /// The AWS settings of an S3 lake (empty for a local one).
    env: BTreeMap<String, String>,
    /// The API's write-ahead log for an S3 lake (a local lake keeps it in
    /// the lake's folder), one per lake so concurrent tests never share one.
    wal_dir: Option<PathBuf>,
}

impl TestLake {
    /// A lake in a local directory.
    pub fn local(path: &Path) -> Self {
        Self { location: path.display().to_string(), env: BTreeMap::new(), wal_dir: None }
    }

    /// A lake under `s3://lake/<prefix>` of `server`.
    pub fn on(server: &S3Server, prefix: &str) -> Self {
        let location = server.location(prefix);
        let name: String = location.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let wal_dir = std::env::temp_dir().join(format!("sessionlake-it-wal-{}-{name}", std::process::id()));
        Self { location, env: server.options().clone(), wal_dir: Some(wal_dir) }
    }

    /// "local" or "s3", for reports.
    pub fn kind(&self) -> &'static str {
        if self.env.is_empty() { "local" } else { "s3" }
    }

    /// The binary on this lake (with the S3 settings in its environment).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = sessionlake(&self.location, args);
        command.envs(&self.env);
        if let Some(wal_dir) = &self.wal_dir {
            command.env("SESSIONLAKE_WAL_DIR", wal_dir);
        }
        command
    }

    /// The lake, for reading it from the test.
    pub fn lake(&self) -> Lake {
        Lake::parse(&self.location).expect("a lake location").with_storage_options(self.env.clone())
    }

    /// The landing zone's files as (name, size), sorted; the manifest and
    /// an object store's staging folder left out.
    pub async fn landing(&self) -> Vec<(String, u64)> {
        let lake = self.lake();
        let mut files: Vec<(String, u64)> = match lake.local_root() {
            Some(_) => std::fs::read_dir(lake.landing_dir())
                .map(|entries| {
                    entries
                        .map(|entry| entry.unwrap())
                        .map(|entry| {
                            (entry.file_name().to_string_lossy().into_owned(), entry.metadata().unwrap().len())
                        })
                        .collect()
                })
                .unwrap_or_default(),
            None => {
                let prefix = object_store::path::Path::from(tables::LANDING_DIR);
                let listed = lake.store().unwrap().list_with_delimiter(Some(&prefix)).await;
                listed
                    .map(|listing| {
                        listing
                            .objects
                            .into_iter()
                            .map(|object| (object.location.filename().unwrap().to_string(), object.size))
                            .collect()
                    })
                    .unwrap_or_default()
            }
        };
        files.retain(|(name, _)| !["_manifest.jsonl", "_manifest", "_incoming"].contains(&name.as_str()));
        files.sort();
        files
    }
}

impl From<&PathBuf> for TestLake {
    fn from(path: &PathBuf) -> Self {
        Self::local(path)
    }
}

impl From<&TestLake> for TestLake {
    fn from(lake: &TestLake) -> Self {
        lake.clone()
    }
}
