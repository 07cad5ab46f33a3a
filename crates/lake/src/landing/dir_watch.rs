//! Which files of a watched folder are complete and new (`ingest --watch`).
//!
//! A file is taken once it looks finished:
//! - its name is not one writers use while writing: hidden (`.name`), or
//!   ending in `.tmp`, `.part`, `.partial`, `.crdownload`, `.filepart`,
//!   `.swp` or `~` (the write-to-a-temp-name-then-rename convention);
//! - its size and modification time have not changed for the settle time
//!   (a writer that appends under the final name).
//!
//! Each (name, size, modification time) is handed out once per process.
//! Landing is content-addressed (the manifest knows every sha256), so a
//! restarted watcher that hands out the same file again lands nothing new.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{LakeError, Result};

/// Name endings of files still being written.
const IN_PROGRESS_SUFFIXES: [&str; 7] = [".tmp", ".part", ".partial", ".crdownload", ".filepart", ".swp", "~"];

/// What a file looked like when last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Look {
    size: u64,
    modified: Option<SystemTime>,
}

/// A watched folder.
#[derive(Debug)]
pub struct DirWatch {
    dir: PathBuf,
    settle: Duration,
    /// Each candidate's last look, and since when it has looked that way.
    pending: HashMap<PathBuf, (Look, Instant)>,
    /// The looks already handed out.
    taken: HashSet<(PathBuf, Look)>,
}

impl DirWatch {
    /// Watches `dir` (which must exist), taking files unchanged for `settle`.
    pub fn new(dir: impl Into<PathBuf>, settle: Duration) -> Self {
        Self { dir: dir.into(), settle, pending: HashMap::new(), taken: HashSet::new() }
    }

    /// Lists the folder and returns the files that have become complete
    /// since the last call, in name order.
    pub fn ready(&mut self, now: Instant) -> Result<Vec<PathBuf>> {
        let mut seen = HashSet::new();
        let mut ready = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(LakeError::io("listing", &self.dir))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let Ok(metadata) = entry.metadata() else { continue };
            if !metadata.is_file() || is_in_progress(&path) {
                continue;
            }
            let look = Look { size: metadata.len(), modified: metadata.modified().ok() };
            seen.insert(path.clone());
            if self.taken.contains(&(path.clone(), look)) {
                continue;
            }
            let since = match self.pending.get(&path) {
                Some((last, since)) if *last == look => *since,
                _ => {
                    self.pending.insert(path.clone(), (look, now));
                    now
                }
            };
            if now.duration_since(since) >= self.settle {
                self.pending.remove(&path);
                self.taken.insert((path.clone(), look));
                ready.push(path);
            }
        }
        // Forget files that went away (moved or deleted before settling).
        self.pending.retain(|path, _| seen.contains(path));
        ready.sort();
        Ok(ready)
    }
}

/// Whether `path`'s name says a writer is still at it.
pub fn is_in_progress(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else { return true };
    name.starts_with('.') || IN_PROGRESS_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_taken_once_settled_and_never_under_a_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = DirWatch::new(dir.path(), Duration::from_secs(2));
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);

        std::fs::write(dir.path().join("a.jsonl.bz2.tmp"), "half").unwrap();
        std::fs::write(dir.path().join(".b.jsonl.bz2"), "half").unwrap();
        std::fs::write(dir.path().join("c.jsonl.bz2"), "first part").unwrap();
        assert!(watch.ready(at(0)).unwrap().is_empty(), "nothing has settled");
        assert!(watch.ready(at(1)).unwrap().is_empty());
        // c grows: its settle time starts again.
        std::fs::write(dir.path().join("c.jsonl.bz2"), "first part, second part").unwrap();
        assert!(watch.ready(at(2)).unwrap().is_empty());
        assert_eq!(watch.ready(at(4)).unwrap(), vec![dir.path().join("c.jsonl.bz2")]);
        assert!(watch.ready(at(9)).unwrap().is_empty(), "taken once");

        // The temp name is renamed into place: taken once settled.
        std::fs::rename(dir.path().join("a.jsonl.bz2.tmp"), dir.path().join("a.jsonl.bz2")).unwrap();
        assert!(watch.ready(at(10)).unwrap().is_empty());
        assert_eq!(watch.ready(at(12)).unwrap(), vec![dir.path().join("a.jsonl.bz2")]);
        assert!(watch.ready(at(20)).unwrap().is_empty());
    }

    #[test]
    fn temporary_names_are_recognised() {
        for name in ["x.tmp", "x.part", "x.partial", ".x", "x~", "x.crdownload", "x.filepart", "x.swp"] {
            assert!(is_in_progress(Path::new(name)), "{name}");
        }
        for name in ["x.jsonl.bz2", "assignment_data.jsonl.bz2", "tmp.jsonl.bz2"] {
            assert!(!is_in_progress(Path::new(name)), "{name}");
        }
    }
}
