//! Ingest: copy a local file or download a URL into the landing folder,
//! atomically (temp file, fsync, rename) and idempotently (same bytes, same
//! landed file, no second manifest entry).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use sessionlake_model::crash;
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ManifestEntry};
use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::lease::process_is_gone;
use crate::progress;

/// Where the bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An `http://` or `https://` URL, downloaded with a streaming client.
    Url(String),
    /// A local file.
    File(PathBuf),
}

impl Source {
    /// A URL when `text` starts with a scheme the client speaks, else a path.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("http://") || text.starts_with("https://") {
            Source::Url(text.to_string())
        } else {
            Source::File(PathBuf::from(text.strip_prefix("file://").unwrap_or(text)))
        }
    }

    fn display(&self) -> String {
        match self {
            Source::Url(url) => url.clone(),
            Source::File(path) => path.display().to_string(),
        }
    }

    /// The file name to land under.
    fn file_name(&self) -> String {
        let name = match self {
            Source::Url(url) => {
                url.split(['?', '#']).next().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string()
            }
            Source::File(path) => path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        let safe: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).collect();
        if safe.is_empty() || safe.starts_with('.') || safe.starts_with('_') {
            "source.jsonl.bz2".to_string()
        } else {
            safe
        }
    }
}

/// What an ingest did.
#[derive(Debug, Clone)]
pub struct LandingReport {
    /// The landed file.
    pub path: PathBuf,
    /// Its manifest entry.
    pub entry: ManifestEntry,
    /// True when the same bytes had landed before (nothing was added).
    pub already_landed: bool,
    /// Wall time.
    pub seconds: f64,
}

/// The ingest stage.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// The lake to land into.
    pub lake: Lake,
    /// What to land.
    pub source: Source,
    /// Show a progress bar.
    pub show_progress: bool,
}

/// The bytes being received, hashed as they arrive.
struct Incoming {
    path: PathBuf,
    file: std::fs::File,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
}

impl Incoming {
    fn create(dir: &Path) -> Result<Self> {
        let path = dir.join(format!(".incoming-{}-{}.tmp", std::process::id(), nanos()));
        let file = std::fs::File::create(&path).map_err(LakeError::io("creating", &path))?;
        Ok(Self { path, file, hasher: Sha256::new(), size: 0, head: Vec::with_capacity(3) })
    }

    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        if self.head.len() < 3 {
            let wanted = (3 - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..wanted]);
        }
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk).map_err(LakeError::io("writing", &self.path))
    }

    fn finish(self) -> Result<(PathBuf, String, u64, Vec<u8>)> {
        self.file.sync_all().map_err(LakeError::io("syncing", &self.path))?;
        Ok((self.path, hex::encode(self.hasher.finalize()), self.size, self.head))
    }
}

/// Removes the temp files of ingests that died (crash, SIGKILL): the pid in
/// their name is no longer running. Best effort: a failure only leaves the
/// file for the next ingest.
fn remove_orphans(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(".incoming-").and_then(|rest| rest.split('-').next()) else { continue };
        let modified = entry.metadata().and_then(|metadata| metadata.modified()).ok();
        if process_is_gone(pid, modified) && std::fs::remove_file(entry.path()).is_ok() {
            tracing::warn!(file = %name, "removed the temp file of an ingest that died");
        }
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Removes the temp file unless disarmed: no partial file survives an error.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Ingest {
    /// Lands the source; see the module docs.
    pub async fn run(&self) -> Result<LandingReport> {
        let started = Instant::now();
        let dir = self.lake.landing_dir();
        std::fs::create_dir_all(&dir).map_err(LakeError::io("creating", &dir))?;
        remove_orphans(&dir);
        let mut incoming = Incoming::create(&dir)?;
        let mut guard = RemoveOnDrop(Some(incoming.path.clone()));
        match &self.source {
            Source::Url(url) => self.download(url, &mut incoming).await?,
            Source::File(path) => self.copy(path, &mut incoming)?,
        }
        let (temp_path, sha256, size, head) = incoming.finish()?;
        if head != b"BZh" {
            return Err(LakeError::NotBzip2 {
                source_name: self.source.display(),
                magic: String::from_utf8_lossy(&head).into_owned(),
            });
        }

        let manifest = Manifest::in_dir(&dir);
        let entries = manifest.entries()?;
        if let Some(entry) = entries.iter().find(|entry| entry.sha256 == sha256) {
            return Ok(LandingReport {
                path: dir.join(&entry.file),
                entry: entry.clone(),
                already_landed: true,
                seconds: started.elapsed().as_secs_f64(),
            });
        }

        let file_name = self.free_name(&dir, &sha256, &entries)?;
        let final_path = dir.join(&file_name);
        crash::point(crash::INGEST_BEFORE_RENAME);
        if !final_path.exists() {
            std::fs::rename(&temp_path, &final_path).map_err(LakeError::io("renaming into", &final_path))?;
            sync_dir(&dir)?;
        }
        guard.0 = (temp_path != final_path && temp_path.exists()).then_some(temp_path);
        let entry = ManifestEntry {
            file: file_name,
            sha256,
            size,
            source: self.source.display(),
            landed_at: chrono::Utc::now(),
        };
        crash::point(crash::INGEST_BEFORE_MANIFEST);
        manifest.append(&entry)?;
        Ok(LandingReport { path: final_path, entry, already_landed: false, seconds: started.elapsed().as_secs_f64() })
    }

    /// The source's own name when free, or when it already holds these very
    /// bytes (a crash after the rename); otherwise a name with a hash suffix.
    fn free_name(&self, dir: &Path, sha256: &str, entries: &[ManifestEntry]) -> Result<String> {
        let name = self.source.file_name();
        let candidates = [name.clone(), with_hash_suffix(&name, sha256)];
        for candidate in candidates {
            let path = dir.join(&candidate);
            let recorded = entries.iter().any(|entry| entry.file == candidate);
            if recorded {
                continue;
            }
            if !path.exists() || sha256_of_file(&path)? == sha256 {
                return Ok(candidate);
            }
        }
        Ok(with_hash_suffix(&name, &format!("{sha256}-{}", nanos())))
    }

    async fn download(&self, url: &str, incoming: &mut Incoming) -> Result<()> {
        let error = |message: String| LakeError::Download { url: url.to_string(), message };
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("sessionlake/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| error(e.to_string()))?;
        let response = client.get(url).send().await.map_err(|e| error(one_line(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(error(format!("server answered {status}")));
        }
        let expected = response.content_length();
        let bar = progress::bytes_bar(expected, "download", self.show_progress);
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| error(format!("connection broke after {} bytes: {}", incoming.size, one_line(&e))))?;
            incoming.write(&chunk)?;
            bar.set_position(incoming.size);
        }
        bar.finish_and_clear();
        if let Some(expected) = expected
            && incoming.size != expected
        {
            return Err(error(format!("body truncated: got {} of {expected} bytes", incoming.size)));
        }
        Ok(())
    }

    fn copy(&self, path: &Path, incoming: &mut Incoming) -> Result<()> {
        let mut file = std::fs::File::open(path).map_err(LakeError::io("opening", path))?;
        let total = file.metadata().map(|meta| meta.len()).ok();
        let bar = progress::bytes_bar(total, "copy", self.show_progress);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = std::io::Read::read(&mut file, &mut buffer).map_err(LakeError::io("reading", path))?;
            if read == 0 {
                break;
            }
            incoming.write(&buffer[..read])?;
            bar.set_position(incoming.size);
        }
        bar.finish_and_clear();
        Ok(())
    }
}

fn with_hash_suffix(name: &str, sha256: &str) -> String {
    let short = &sha256[..sha256.len().min(12)];
    match name.split_once('.') {
        Some((stem, extension)) => format!("{stem}-{short}.{extension}"),
        None => format!("{name}-{short}"),
    }
}

fn sha256_of_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(LakeError::io("opening", path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(LakeError::io("reading", path))?;
    Ok(hex::encode(hasher.finalize()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|handle| handle.sync_all()).map_err(LakeError::io("syncing", dir))
}

/// An error and its causes on one line (reqwest hides the useful part in
/// the source chain, e.g. "connection refused").
fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
