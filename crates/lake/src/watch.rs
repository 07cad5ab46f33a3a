//! Cheap "is there anything new?" checks for the followers, so that an
//! idle `up` costs next to nothing: a pass of a stage opens its tables and
//! replays their logs, while these look at one name.
//!
//! - [`LogWatch`]: has a Delta table a version it has not reported yet?
//!   One existence check of the next commit file (`_delta_log/<v+1>.json`)
//!   per call once it knows the latest version.
//! - [`LandingWatch`]: has a file landed since the last call? One listing
//!   of the landing manifest's folder per call.
//!
//! Both err on the side of "yes": the first call, and any call that cannot
//! tell, report a change, so a follower never misses data because of them.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sessionlake_model::tables;

use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::landing::MANIFEST_DIR;
use crate::schema::TableSpec;

/// Watches one Delta table's log for new versions.
pub struct LogWatch {
    store: Arc<dyn ObjectStore>,
    log: Path,
    /// The first version not reported yet; `None` until the log was listed.
    next: Option<u64>,
}

impl LogWatch {
    /// A watch of `spec`'s table in `lake` (which may not exist yet).
    pub fn new(lake: &Lake, spec: &TableSpec) -> Result<Self> {
        Ok(Self { store: lake.store()?, log: Path::from(spec.dir).join("_delta_log"), next: None })
    }

    /// `true` when the table has a version not reported by an earlier call
    /// (always on the first call, which lists the log to find the latest).
    pub async fn changed(&mut self) -> Result<bool> {
        let Some(mut next) = self.next else {
            self.next = Some(self.latest().await?.map_or(0, |latest| latest + 1));
            return Ok(true);
        };
        let first = next;
        while self.exists(next).await? {
            next += 1;
        }
        self.next = Some(next);
        Ok(next > first)
    }

    async fn exists(&self, version: u64) -> Result<bool> {
        let location = self.log.clone().join(format!("{version:020}.json"));
        match self.store.head(&location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(LakeError::store("reading", &location)(error)),
        }
    }

    /// The latest version whose commit file is in the log.
    async fn latest(&self) -> Result<Option<u64>> {
        let objects: Vec<_> =
            self.store.list(Some(&self.log)).try_collect().await.map_err(LakeError::store("listing", &self.log))?;
        Ok(objects
            .iter()
            .filter_map(|object| object.location.filename()?.strip_suffix(".json")?.parse::<u64>().ok())
            .max())
    }
}

/// Watches the landing zone for newly landed files.
pub struct LandingWatch {
    store: Arc<dyn ObjectStore>,
    folder: Path,
    /// The manifest objects seen by the last call; `None` before the first.
    seen: Option<BTreeSet<Path>>,
}

impl LandingWatch {
    /// A watch of `lake`'s landing zone.
    pub fn new(lake: &Lake) -> Result<Self> {
        Ok(Self { store: lake.store()?, folder: Path::from(tables::LANDING_DIR).join(MANIFEST_DIR), seen: None })
    }

    /// `true` when a file landed since the last call (always on the first).
    pub async fn changed(&mut self) -> Result<bool> {
        let objects: BTreeSet<Path> = self
            .store
            .list(Some(&self.folder))
            .map_ok(|object| object.location)
            .try_collect()
            .await
            .map_err(LakeError::store("listing", &self.folder))?;
        let changed = self.seen.as_ref() != Some(&objects);
        self.seen = Some(objects);
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::RAW;

    #[tokio::test]
    async fn a_log_watch_reports_each_new_version_once() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let mut watch = LogWatch::new(&lake, &RAW).unwrap();
        assert!(watch.changed().await.unwrap(), "the first call always says yes");
        assert!(!watch.changed().await.unwrap(), "no table, nothing new");
        let log = dir.path().join(RAW.dir).join("_delta_log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(log.join(format!("{:020}.json", 0)), "{}").unwrap();
        assert!(watch.changed().await.unwrap());
        assert!(!watch.changed().await.unwrap());
        for version in [1, 2] {
            std::fs::write(log.join(format!("{version:020}.json")), "{}").unwrap();
        }
        assert!(watch.changed().await.unwrap(), "two versions at once: one change");
        assert!(!watch.changed().await.unwrap());

        // A watch started on an existing table begins after its latest.
        let mut late = LogWatch::new(&lake, &RAW).unwrap();
        assert!(late.changed().await.unwrap());
        assert!(!late.changed().await.unwrap());
        std::fs::write(log.join(format!("{:020}.json", 3)), "{}").unwrap();
        assert!(late.changed().await.unwrap());
    }

    #[tokio::test]
    async fn a_landing_watch_reports_new_manifest_entries() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let mut watch = LandingWatch::new(&lake).unwrap();
        assert!(watch.changed().await.unwrap());
        assert!(!watch.changed().await.unwrap());
        let folder = dir.path().join(tables::LANDING_DIR).join(MANIFEST_DIR);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("a.jsonl.bz2.json"), "{}").unwrap();
        assert!(watch.changed().await.unwrap());
        assert!(!watch.changed().await.unwrap());
    }
}
