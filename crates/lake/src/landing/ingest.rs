//! Ingest: copy a local file or download a URL into the landing folder,
//! atomically (temp file, fsync, rename) and idempotently (same bytes, same
//! landed file, no second manifest entry).
//!
//! File work (copying, hashing, fsync, renames, the manifest) runs on
//! tokio's blocking threads, never on the async workers: a multi-GB copy
//! would otherwise stall every task sharing them (the API and the followers
//! of `up`). A download streams its chunks to one blocking writer through
//! a short bounded channel.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sessionlake_model::{crash, tables};
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ManifestEntry, Recorded};
use crate::error::{LakeError, Result, one_line};
use crate::lake::Lake;
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
    /// Where the landed file is: its path, or its URL on an object store.
    pub location: String,
    /// Its manifest entry.
    pub entry: ManifestEntry,
    /// True when the same bytes had landed before (nothing was added).
    pub already_landed: bool,
    /// Wall time.
    pub seconds: f64,
}

/// How long a download may go without receiving a byte (its response
/// headers included) before it fails, unless configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Temp files of ingests not written for this long are left by ingests
/// that died, and removed.
pub const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// The folder of staging objects inside the landing zone of an object store.
const INCOMING_DIR: &str = "_incoming";

/// The part size of uploads to an object store.
const UPLOAD_PART_BYTES: usize = 16 << 20;

/// Parts uploaded at once.
const UPLOADS_IN_FLIGHT: usize = 4;

/// Chunks of a download in flight between the network and the writer: a
/// bound on the memory a slow disk makes the download hold.
const CHUNKS_IN_FLIGHT: usize = 16;

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
    /// A new temp file in `dir`, locked (see [`RemoveOnDrop`]). Between
    /// its creation and the lock, a sweeping ingest may take it for an
    /// orphan and remove it: then the locked file is no longer the one at
    /// the path, and another is created.
    fn create(dir: &Path) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let path = dir.join(format!(".incoming-{}-{}.tmp", std::process::id(), nanos()));
            let file = std::fs::File::create_new(&path).map_err(LakeError::io("creating", &path))?;
            file.lock().map_err(LakeError::io("locking", &path))?;
            let ours = file.metadata().map_err(LakeError::io("reading", &path))?;
            if std::fs::metadata(&path).is_ok_and(|found| (found.dev(), found.ino()) == (ours.dev(), ours.ino())) {
                return Ok(Self { path, file, hasher: Sha256::new(), size: 0, head: Vec::with_capacity(3) });
            }
        }
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

    fn finish(self) -> Result<Received> {
        self.file.sync_all().map_err(LakeError::io("syncing", &self.path))?;
        Ok(Received {
            temp_path: self.path,
            sha256: hex::encode(self.hasher.finalize()),
            size: self.size,
            head: self.head,
        })
    }
}

/// The bytes received, durable in their temp file.
struct Received {
    temp_path: PathBuf,
    sha256: String,
    size: u64,
    /// The first bytes (the bzip2 magic, when it is one).
    head: Vec<u8>,
}

/// Starts file work on tokio's blocking threads at once (see the module
/// docs) and returns its outcome; a panic there is the caller's panic.
fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> impl Future<Output = Result<T>> {
    let handle = tokio::task::spawn_blocking(work);
    async move {
        match handle.await {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => {
                Err(LakeError::Unexpected { table: "landing", message: format!("file work cancelled: {error}") })
            }
        }
    }
}

/// Removes the temp files of ingests that died (crash, SIGKILL): a live
/// ingest holds an exclusive lock on its temp file (see [`RemoveOnDrop`]),
/// which the kernel releases when its process dies, so a temp file whose
/// lock this process can take is an orphan. Unlike a pid, a lock means the
/// same across containers sharing a folder. A temp file not written for
/// [`ORPHAN_AGE`] whose lock cannot be told (a file system without locks)
/// is removed too. Best effort: a failure leaves the file for the next
/// ingest.
fn remove_orphans(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".incoming-") {
            continue;
        }
        let Ok(handle) = std::fs::File::open(entry.path()) else { continue };
        let orphan = match handle.try_lock() {
            Ok(()) => true,
            Err(std::fs::TryLockError::WouldBlock) => false,
            Err(std::fs::TryLockError::Error(_)) => {
                let age = entry.metadata().and_then(|meta| meta.modified()).ok().and_then(|time| time.elapsed().ok());
                age.is_some_and(|age| age > ORPHAN_AGE)
            }
        };
        if orphan && std::fs::remove_file(entry.path()).is_ok() {
            tracing::warn!(file = %name, "removed the temp file of an ingest that died");
        }
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Removes the temp file when dropped: no partial file survives an error.
/// It also holds an exclusive lock (`flock`) on the file from its creation
/// until its removal: the kernel releases it when the process dies, even by
/// SIGKILL, so a temp file whose lock can be taken belongs to an ingest
/// that died (see [`remove_orphans`]).
struct RemoveOnDrop {
    path: PathBuf,
    /// Dropped after the removal (fields drop after `Drop::drop`): the lock
    /// is held until the file is gone.
    _lock: std::fs::File,
}

impl RemoveOnDrop {
    /// Removes `incoming`'s file when dropped, holding its lock until then.
    fn of(incoming: &Incoming) -> Result<Self> {
        let lock = incoming.file.try_clone().map_err(LakeError::io("opening", &incoming.path))?;
        Ok(Self { path: incoming.path.clone(), _lock: lock })
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Ingest {
    /// Lands the source (see the module docs), with downloads failing after
    /// [`DEFAULT_IDLE_TIMEOUT`] without a byte.
    pub async fn run(&self) -> Result<LandingReport> {
        self.run_with_idle_timeout(DEFAULT_IDLE_TIMEOUT).await
    }

    /// Lands the source; a download fails once `idle_timeout` passes
    /// without a byte received (before or during the body), naming the URL
    /// and the stall. Nothing is landed on any error.
    pub async fn run_with_idle_timeout(&self, idle_timeout: Duration) -> Result<LandingReport> {
        let started = Instant::now();
        // The bytes are received into a local temp file: in the landing
        // folder of a local lake (then linked into place), else in the
        // system's temp folder (then uploaded).
        let spool = match self.lake.local_root() {
            Some(_) => self.lake.landing_dir(),
            None => std::env::temp_dir(),
        };
        let incoming = blocking({
            let spool = spool.clone();
            move || {
                std::fs::create_dir_all(&spool).map_err(LakeError::io("creating", &spool))?;
                remove_orphans(&spool);
                Incoming::create(&spool)
            }
        })
        .await?;
        let guard = RemoveOnDrop::of(&incoming)?;
        let received = match &self.source {
            Source::Url(url) => self.download(url, incoming, idle_timeout).await?,
            Source::File(path) => {
                let (path, show_progress) = (path.clone(), self.show_progress);
                blocking(move || copy(&path, incoming, show_progress)).await?
            }
        };
        self.settle(received, guard, started).await
    }

    /// Checks the received bytes, places them under a free name and records
    /// them in the manifest, unless the same bytes landed before. `guard`
    /// removes the temp file in every case.
    async fn settle(&self, received: Received, guard: RemoveOnDrop, started: Instant) -> Result<LandingReport> {
        let Received { temp_path, sha256, size, head } = received;
        if head != b"BZh" {
            return Err(LakeError::NotBzip2 {
                source_name: self.source.display(),
                magic: String::from_utf8_lossy(&head).into_owned(),
            });
        }
        let manifest = Manifest::of(&self.lake)?;
        let entries = manifest.entries().await?;
        let report = |entry: &ManifestEntry, already_landed| LandingReport {
            location: landed_location(&self.lake, &entry.file),
            entry: entry.clone(),
            already_landed,
            seconds: started.elapsed().as_secs_f64(),
        };
        if let Some(entry) = entries.iter().find(|entry| entry.sha256 == sha256) {
            return Ok(report(entry, true));
        }
        let taken: Vec<String> = entries.into_iter().map(|entry| entry.file).collect();
        let candidates: Vec<String> = candidate_names(&self.source.file_name(), &sha256)
            .into_iter()
            .filter(|candidate| !taken.contains(candidate))
            .collect();
        let placed = match self.lake.local_root() {
            Some(_) => {
                let (dir, sha256) = (self.lake.landing_dir(), sha256.clone());
                blocking(move || {
                    let placed = place_local(&dir, &temp_path, &candidates, &sha256);
                    drop(guard);
                    placed
                })
                .await?
            }
            None => {
                let placed = place_remote(&self.lake, &temp_path, &candidates, &sha256, self.show_progress).await;
                drop(guard);
                placed?
            }
        };
        let entry =
            ManifestEntry { file: placed, sha256, size, source: self.source.display(), landed_at: chrono::Utc::now() };
        crash::point(crash::INGEST_BEFORE_MANIFEST);
        match manifest.record(&entry).await? {
            Recorded::Created => Ok(report(&entry, false)),
            // A concurrent ingest of the same bytes recorded them first.
            Recorded::Existing(existing) if existing.sha256 == entry.sha256 => Ok(report(&existing, true)),
            Recorded::Existing(existing) => Err(LakeError::Unexpected {
                table: "landing",
                message: format!(
                    "{} is recorded with sha256 {} but holds {} (the landing zone was changed by hand?)",
                    existing.file, existing.sha256, entry.sha256
                ),
            }),
        }
    }

    /// Downloads `url` into `incoming`: the network here, the writing and
    /// hashing on a blocking thread fed through a bounded channel. Fails
    /// when `idle_timeout` passes without a byte, headers included.
    async fn download(&self, url: &str, incoming: Incoming, idle_timeout: Duration) -> Result<Received> {
        let (chunks, to_write) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let writer = blocking(move || write_chunks(incoming, to_write));
        let error = |message: String| LakeError::Download { url: url.to_string(), message };
        let idle_seconds = idle_timeout.as_secs_f64();
        let streamed = async move {
            let client = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(30))
                .user_agent(concat!("sessionlake/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| error(e.to_string()))?;
            let response = tokio::time::timeout(idle_timeout, client.get(url).send())
                .await
                .map_err(|_| error(format!("the server stalled: no response within {idle_seconds} s")))?
                .map_err(|e| error(one_line(&e)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(error(format!("server answered {status}")));
            }
            let expected = response.content_length();
            let bar = progress::bytes_bar(expected, "download", self.show_progress);
            let mut stream = response.bytes_stream();
            let mut size = 0u64;
            loop {
                let next = tokio::time::timeout(idle_timeout, stream.next()).await.map_err(|_| {
                    error(format!("the server stalled: nothing received for {idle_seconds} s after {size} bytes"))
                })?;
                let Some(chunk) = next else { break };
                let chunk =
                    chunk.map_err(|e| error(format!("connection broke after {size} bytes: {}", one_line(&e))))?;
                size += chunk.len() as u64;
                if chunks.send(chunk).await.is_err() {
                    // The writer failed: its error is the one to report.
                    return Ok(());
                }
                bar.set_position(size);
            }
            bar.finish_and_clear();
            match expected {
                Some(expected) if size != expected => {
                    Err(error(format!("body truncated: got {size} of {expected} bytes")))
                }
                _ => Ok(()),
            }
        }
        .await;
        // The sender is dropped: the writer ends. Its own error (a full
        // disk) explains a stream cut short by it, so it comes first.
        let received = writer.await?;
        streamed?;
        Ok(received)
    }
}

/// Writes the chunks of a download as they arrive, until the sender is
/// gone (blocking).
fn write_chunks<Chunk: AsRef<[u8]>>(
    mut incoming: Incoming,
    mut to_write: tokio::sync::mpsc::Receiver<Chunk>,
) -> Result<Received> {
    while let Some(chunk) = to_write.blocking_recv() {
        incoming.write(chunk.as_ref())?;
    }
    incoming.finish()
}

/// Copies the local file `path` into `incoming` (blocking).
fn copy(path: &Path, mut incoming: Incoming, show_progress: bool) -> Result<Received> {
    let mut file = std::fs::File::open(path).map_err(LakeError::io("opening", path))?;
    let total = file.metadata().map(|meta| meta.len()).ok();
    let bar = progress::bytes_bar(total, "copy", show_progress);
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
    incoming.finish()
}

/// The names a file may land under, in order: its own, then with a hash
/// suffix, then with a hash and time suffix.
fn candidate_names(name: &str, sha256: &str) -> Vec<String> {
    vec![name.to_string(), with_hash_suffix(name, sha256), with_hash_suffix(name, &format!("{sha256}-{}", nanos()))]
}

/// Places the temp file's bytes under the first free candidate name of a
/// local landing folder without ever replacing a file: a hard link fails
/// when the name exists, atomically, so of two ingests racing for one name
/// exactly one gets it. A name already holding these very bytes (a crash
/// before the manifest, or a concurrent ingest of the same bytes) is used
/// as it is.
fn place_local(dir: &Path, temp_path: &Path, candidates: &[String], sha256: &str) -> Result<String> {
    for candidate in candidates {
        let path = dir.join(candidate);
        crash::point(crash::INGEST_BEFORE_RENAME);
        match std::fs::hard_link(temp_path, &path) {
            Ok(()) => {
                sync_dir(dir)?;
                return Ok(candidate.clone());
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                if sha256_of_file(&path)? == sha256 {
                    return Ok(candidate.clone());
                }
            }
            Err(error) => return Err(LakeError::io("linking into", &path)(error)),
        }
    }
    Err(no_free_name(candidates))
}

/// The same on an object store: the bytes are uploaded (multipart) to a
/// staging object in `_incoming/`, then copied to the first free candidate
/// name with a copy-if-not-exists, which the store refuses atomically when
/// the name exists. The staging object is removed in every case.
async fn place_remote(
    lake: &Lake,
    temp_path: &Path,
    candidates: &[String],
    sha256: &str,
    show_progress: bool,
) -> Result<String> {
    let store = lake.store()?;
    let landing = object_store::path::Path::from(tables::LANDING_DIR);
    let staging =
        landing.clone().join(INCOMING_DIR).join(format!("{}-{:016x}", nanos(), getrandom::u64().unwrap_or(0)));
    remove_stale_staging(store.as_ref(), &landing.clone().join(INCOMING_DIR)).await;
    upload(store.as_ref(), &staging, temp_path, show_progress).await?;
    let placed = async {
        for candidate in candidates {
            let location = landing.clone().join(candidate.as_str());
            crash::point(crash::INGEST_BEFORE_RENAME);
            match store.copy_if_not_exists(&staging, &location).await {
                Ok(()) => return Ok(candidate.clone()),
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    if sha256_of_object(store.as_ref(), &location).await? == sha256 {
                        return Ok(candidate.clone());
                    }
                }
                Err(error) => return Err(LakeError::store("copying into", &location)(error)),
            }
        }
        Err(no_free_name(candidates))
    }
    .await;
    if let Err(error) = store.delete(&staging).await {
        tracing::warn!(%error, staging = %staging, "removing a staging object failed");
    }
    placed
}

/// Removes staging objects older than [`ORPHAN_AGE`], left by ingests
/// that died between their upload and its copy into place. (Uploads that
/// never completed are not objects yet: a bucket lifecycle rule aborting
/// incomplete multipart uploads removes their parts.) Best effort.
async fn remove_stale_staging(store: &dyn ObjectStore, folder: &object_store::path::Path) {
    let Ok(objects) = store.list(Some(folder)).try_collect::<Vec<_>>().await else { return };
    let stale_before = chrono::Utc::now() - ORPHAN_AGE;
    for object in objects.into_iter().filter(|object| object.last_modified < stale_before) {
        if store.delete(&object.location).await.is_ok() {
            tracing::warn!(staging = %object.location, "removed the staging object of an ingest that died");
        }
    }
}

fn no_free_name(candidates: &[String]) -> LakeError {
    LakeError::Unexpected { table: "landing", message: format!("no free landing name among {candidates:?}") }
}

/// Uploads the local file `path` to `location` in parts, never holding
/// more than a few parts in memory.
async fn upload(
    store: &dyn ObjectStore,
    location: &object_store::path::Path,
    path: &Path,
    show_progress: bool,
) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await.map_err(LakeError::io("opening", path))?;
    let total = file.metadata().await.map(|meta| meta.len()).ok();
    let bar = progress::bytes_bar(total, "upload", show_progress);
    let upload = store.put_multipart(location).await.map_err(LakeError::store("uploading", location))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART_BYTES);
    let mut buffer = vec![0u8; 1 << 20];
    let mut sent = 0u64;
    loop {
        let read = file.read(&mut buffer).await.map_err(LakeError::io("reading", path))?;
        if read == 0 {
            break;
        }
        writer.wait_for_capacity(UPLOADS_IN_FLIGHT).await.map_err(LakeError::store("uploading", location))?;
        writer.write(&buffer[..read]);
        sent += read as u64;
        bar.set_position(sent);
    }
    writer.finish().await.map_err(LakeError::store("uploading", location))?;
    bar.finish_and_clear();
    Ok(())
}

/// The hex SHA-256 of an object, streamed.
pub(crate) async fn sha256_of_object(store: &dyn ObjectStore, location: &object_store::path::Path) -> Result<String> {
    let object = store.get(location).await.map_err(LakeError::store("reading", location))?;
    let mut stream = object.into_stream();
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(chunk.map_err(LakeError::store("reading", location))?);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Where a landed file is, for reports: its path, or its URL.
fn landed_location(lake: &Lake, file: &str) -> String {
    match lake.local_root() {
        Some(_) => lake.landing_dir().join(file).display().to_string(),
        None => format!("{}{}/{file}", lake.display(), tables::LANDING_DIR),
    }
}

fn with_hash_suffix(name: &str, sha256: &str) -> String {
    let short = &sha256[..sha256.len().min(12)];
    match name.split_once('.') {
        Some((stem, extension)) => format!("{stem}-{short}.{extension}"),
        None => format!("{name}-{short}"),
    }
}

/// The hex SHA-256 of the file at `path` (blocking).
pub(crate) fn sha256_of_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(LakeError::io("opening", path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(LakeError::io("reading", path))?;
    Ok(hex::encode(hasher.finalize()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|handle| handle.sync_all()).map_err(LakeError::io("syncing", dir))
}
