//! Leases between processes sharing a lake folder: a file created
//! exclusively, holding the owner's pid, removed when the work is done. A
//! lease whose owner is gone (a crash, SIGKILL) is taken over.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{LakeError, Result};

/// Whether the process `pid` no longer runs. Without `/proc` to ask, a
/// file last touched (`modified`) more than a day ago counts as left by a
/// process that is gone.
pub(crate) fn process_is_gone(pid: &str, modified: Option<SystemTime>) -> bool {
    if Path::new("/proc/self").exists() {
        return !Path::new("/proc").join(pid.trim()).exists();
    }
    modified.and_then(|time| time.elapsed().ok()).is_some_and(|age| age.as_secs() > 86_400)
}

/// A lease held by this process; released (the file removed) when dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    path: PathBuf,
}

impl Lease {
    /// Takes the lease at `path`, or `None` while a running process holds it.
    pub(crate) fn try_take(path: &Path) -> Result<Option<Self>> {
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    write!(file, "{}", std::process::id()).map_err(LakeError::io("writing", path))?;
                    return Ok(Some(Self { path: path.to_path_buf() }));
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(path).unwrap_or_default();
                    let modified = std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok();
                    // An empty file is a holder caught between create and write.
                    if holder.trim().is_empty() || !process_is_gone(&holder, modified) {
                        return Ok(None);
                    }
                    tracing::warn!(lease = %path.display(), holder = %holder.trim(), "taking over the lease of a process that is gone");
                    let _ = std::fs::remove_file(path);
                }
                Err(error) => return Err(LakeError::io("creating", path)(error)),
            }
        }
        Ok(None)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
