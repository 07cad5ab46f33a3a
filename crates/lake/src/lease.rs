//! Leases between processes sharing a lake, on local disk or an object
//! store alike: one holder at a time, an expiry, renewal while held, and
//! fencing of the work done under it.
//!
//! A lease is a folder of records, one object per *generation*
//! (`00000000000000000042.json`: owner, expiry, released or not). Only the
//! highest generation counts. Every change — taking, renewing, releasing —
//! writes the next generation with a conditional put (create if absent:
//! `PutMode::Create`, `If-None-Match: *` on S3, a hard link on local disk),
//! so of two processes that both saw generation `n`, exactly one writes
//! `n + 1` and the other learns it lost. Nothing is ever overwritten,
//! checked-then-renamed, or judged by a pid.
//!
//! - **Taking:** allowed when there is no record, the last one is released,
//!   or it expired more than [`LeaseSettings::grace`] ago.
//! - **Renewing:** the holder writes the next generation every third of
//!   [`LeaseSettings::ttl`]; if that generation exists already, someone took
//!   the lease over and the holder has lost it.
//! - **Fencing:** [`Lease::fence`] runs the work with a deadline a
//!   [`LeaseSettings::margin`] before the holder's own expiry (moved on by
//!   each renewal). Past it the work is dropped, before its commit if the
//!   commit had not started; a commit in flight then has the whole grace to
//!   finish before anyone may take over. So the holders' clocks may differ
//!   by up to about the grace, and a commit must not take longer than it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::error::{LakeError, Result};

/// How long a lease lasts and how it is fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a record holds without renewal (renewed every third of it).
    pub ttl: Duration,
    /// How long after a record's expiry another process may take over.
    pub grace: Duration,
    /// How long before its expiry the holder stops its work.
    pub margin: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(30), grace: Duration::from_secs(15), margin: Duration::from_secs(5) }
    }
}

/// One generation of a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// Who holds it: host, pid and a random part, unique per take.
    owner: String,
    /// Until when (Unix milliseconds).
    expires_at_ms: i64,
    /// True once the holder gave it back.
    released: bool,
}

/// What a holder knows about its lease, shared with its renewal task.
#[derive(Debug)]
struct Held {
    generation: u64,
    expires_at_ms: i64,
    lost: Option<String>,
}

/// A lease held by this process. Renewed in the background until
/// [`Lease::release`] (or drop, which stops renewing and releases it if a
/// runtime is at hand).
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    folder: Path,
    owner: String,
    settings: LeaseSettings,
    held: Arc<Mutex<Held>>,
    renewal: Option<JoinHandle<()>>,
}

impl Lease {
    /// Takes the lease in `folder` of `store`, or `None` while another
    /// holder has it.
    pub async fn try_take(store: Arc<dyn ObjectStore>, folder: Path, settings: LeaseSettings) -> Result<Option<Self>> {
        let latest = latest(store.as_ref(), &folder).await?;
        let now = Utc::now().timestamp_millis();
        let next = match &latest {
            None => 1,
            Some((generation, record)) => {
                let free_at = record.expires_at_ms.saturating_add(millis(settings.grace));
                if !record.released && now < free_at {
                    return Ok(None);
                }
                if !record.released {
                    tracing::warn!(lease = %folder, holder = %record.owner, "taking over an expired lease");
                }
                generation + 1
            }
        };
        let owner = new_owner();
        let expires_at_ms = now.saturating_add(millis(settings.ttl));
        let record = Record { owner: owner.clone(), expires_at_ms, released: false };
        if !create(store.as_ref(), &folder, next, &record).await? {
            return Ok(None);
        }
        forget_before(store.as_ref(), &folder, next).await;
        let held = Arc::new(Mutex::new(Held { generation: next, expires_at_ms, lost: None }));
        let renewal =
            tokio::spawn(renew(Arc::clone(&store), folder.clone(), owner.clone(), settings, Arc::clone(&held)));
        Ok(Some(Self { store, folder, owner, settings, held, renewal: Some(renewal) }))
    }

    /// Runs `work` while the lease holds: `work` is dropped, and this
    /// answers [`LakeError::LeaseLost`], once the lease is lost or within
    /// [`LeaseSettings::margin`] of its expiry.
    pub async fn fence<F: Future>(&self, work: F) -> Result<F::Output> {
        tokio::pin!(work);
        loop {
            let deadline_ms = {
                let held = self.held.lock().expect("lease state");
                if let Some(why) = &held.lost {
                    return Err(self.lost(why.clone()));
                }
                held.expires_at_ms.saturating_sub(millis(self.settings.margin))
            };
            let left = deadline_ms.saturating_sub(Utc::now().timestamp_millis());
            if left <= 0 {
                return Err(self.lost("it was not renewed in time".to_string()));
            }
            tokio::select! {
                output = &mut work => return Ok(output),
                // Renewals move the deadline on: look again when it passes.
                () = tokio::time::sleep(Duration::from_millis(left as u64)) => {}
            }
        }
    }

    /// Gives the lease back (the next taker need not wait for its expiry).
    pub async fn release(mut self) -> Result<()> {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        release(self.store.as_ref(), &self.folder, &self.owner, &self.held).await
    }

    /// Stops renewing, so the lease expires while `self` is still held (a
    /// holder paused, partitioned or too slow to renew: for tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn stop_renewing(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
    }

    fn lost(&self, why: String) -> LakeError {
        LakeError::LeaseLost { lease: self.folder.to_string(), why }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(renewal) = self.renewal.take() else { return };
        renewal.abort();
        // Dropped without `release` (an error path): give it back in the
        // background if a runtime runs; else it expires by itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, folder, owner, held) =
                (Arc::clone(&self.store), self.folder.clone(), self.owner.clone(), Arc::clone(&self.held));
            runtime.spawn(async move {
                if let Err(error) = release(store.as_ref(), &folder, &owner, &held).await {
                    tracing::debug!(%error, "releasing a dropped lease");
                }
            });
        }
    }
}

/// Writes the next generation (expiry moved on) every third of the TTL
/// until the lease is lost. A failed write (the store unreachable) is tried
/// again at the next tick; the deadline in `fence` stops the work meanwhile.
async fn renew(
    store: Arc<dyn ObjectStore>,
    folder: Path,
    owner: String,
    settings: LeaseSettings,
    held: Arc<Mutex<Held>>,
) {
    let mut ticks = tokio::time::interval(settings.ttl / 3);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let generation = held.lock().expect("lease state").generation + 1;
        let expires_at_ms = Utc::now().timestamp_millis().saturating_add(millis(settings.ttl));
        let record = Record { owner: owner.clone(), expires_at_ms, released: false };
        match create(store.as_ref(), &folder, generation, &record).await {
            Ok(true) => {
                {
                    let mut state = held.lock().expect("lease state");
                    state.generation = generation;
                    state.expires_at_ms = expires_at_ms;
                }
                forget_before(store.as_ref(), &folder, generation).await;
            }
            Ok(false) => {
                tracing::warn!(lease = %folder, "lease taken over by another process");
                held.lock().expect("lease state").lost = Some("another process took it over".to_string());
                return;
            }
            Err(error) => tracing::warn!(lease = %folder, %error, "renewing a lease failed; retrying"),
        }
    }
}

async fn release(store: &dyn ObjectStore, folder: &Path, owner: &str, held: &Mutex<Held>) -> Result<()> {
    let generation = {
        let held = held.lock().expect("lease state");
        if held.lost.is_some() {
            return Ok(());
        }
        held.generation + 1
    };
    let record = Record { owner: owner.to_string(), expires_at_ms: Utc::now().timestamp_millis(), released: true };
    // Not created: someone took over after an expiry; nothing to give back.
    create(store, folder, generation, &record).await.map(drop)
}

/// The highest generation and its record.
async fn latest(store: &dyn ObjectStore, folder: &Path) -> Result<Option<(u64, Record)>> {
    let metas: Vec<_> = store.list(Some(folder)).try_collect().await.map_err(LakeError::store("listing", folder))?;
    let Some((generation, location)) =
        metas.into_iter().filter_map(|meta| Some((generation_of(&meta.location)?, meta.location))).max()
    else {
        return Ok(None);
    };
    let bytes = match store.get(&location).await {
        Ok(object) => object.bytes().await.map_err(LakeError::store("reading", &location))?,
        // Removed by the holder's clean-up after a newer one was written.
        Err(object_store::Error::NotFound { .. }) => return Box::pin(latest(store, folder)).await,
        Err(error) => return Err(LakeError::store("reading", &location)(error)),
    };
    let record = serde_json::from_slice(&bytes).map_err(|error| LakeError::LeaseLost {
        lease: folder.to_string(),
        why: format!("record {location} is damaged: {error}"),
    })?;
    Ok(Some((generation, record)))
}

/// Writes generation `generation`; false when it exists already.
async fn create(store: &dyn ObjectStore, folder: &Path, generation: u64, record: &Record) -> Result<bool> {
    let location = folder.clone().join(format!("{generation:020}.json"));
    let payload = PutPayload::from(serde_json::to_vec(record).expect("a record serializes"));
    let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    match store.put_opts(&location, payload, options).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
        Err(error) => Err(LakeError::store("creating", &location)(error)),
    }
}

/// Removes the generations older than `generation`'s predecessor (best
/// effort: they no longer count, leaving them only costs listing time).
async fn forget_before(store: &dyn ObjectStore, folder: &Path, generation: u64) {
    let Ok(metas) = store.list(Some(folder)).try_collect::<Vec<_>>().await else { return };
    for meta in metas {
        if generation_of(&meta.location).is_some_and(|old| old + 1 < generation) {
            let _ = store.delete(&meta.location).await;
        }
    }
}

fn generation_of(location: &Path) -> Option<u64> {
    location.filename()?.strip_suffix(".json")?.parse().ok()
}

fn new_owner() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host = if host.trim().is_empty() { "host" } else { host.trim() };
    format!("{host}/{}/{:016x}", std::process::id(), getrandom::u64().unwrap_or_default())
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use object_store::local::LocalFileSystem;

    use super::*;

    fn quick() -> LeaseSettings {
        LeaseSettings {
            ttl: Duration::from_millis(600),
            grace: Duration::from_millis(300),
            margin: Duration::from_millis(100),
        }
    }

    fn folder() -> Path {
        Path::from("_sessionlake_leases/compaction")
    }

    /// A fresh store per "process", all on the same folder.
    fn store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
        Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_released_leases_are_free_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lease::try_take(store(dir.path()), folder(), quick()).await.unwrap().expect("free");
        assert!(Lease::try_take(store(dir.path()), folder(), quick()).await.unwrap().is_none(), "held");
        // Held past several TTLs: the renewals keep it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(Lease::try_take(store(dir.path()), folder(), quick()).await.unwrap().is_none(), "renewed");
        assert_eq!(first.fence(async { 7 }).await.unwrap(), 7);
        first.release().await.unwrap();
        let second = Lease::try_take(store(dir.path()), folder(), quick()).await.unwrap();
        assert!(second.is_some(), "released: free without waiting");
        // Old generations are cleaned up: at most the last two remain.
        drop(second);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let left = std::fs::read_dir(dir.path().join("_sessionlake_leases/compaction")).unwrap().count();
        assert!(left <= 3, "{left} records left");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_twenty_racers_for_a_stale_lease_exactly_one_wins() {
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let mut abandoned = Lease::try_take(store(dir.path()), folder(), quick()).await.unwrap().unwrap();
            abandoned.stop_renewing();
            std::mem::forget(abandoned); // a SIGKILLed holder: no release
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let winners = Arc::new(AtomicUsize::new(0));
            let racers: Vec<_> = (0..20)
                .map(|_| {
                    let (store, winners) = (store(dir.path()), Arc::clone(&winners));
                    tokio::spawn(async move {
                        if let Some(lease) = Lease::try_take(store, folder(), quick()).await.unwrap() {
                            winners.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            std::mem::forget(lease);
                        }
                    })
                })
                .collect();
            for racer in racers {
                racer.await.unwrap();
            }
            assert_eq!(winners.load(Ordering::SeqCst), 1, "round {round}");
        }
    }

    #[tokio::test]
    async fn work_of_an_expired_holder_is_stopped_before_a_taker_may_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut stale = Lease::try_take(store(dir.path()), folder(), quick()).await.unwrap().unwrap();
        stale.stop_renewing(); // paused, partitioned, or too slow to renew
        let committed = Arc::new(AtomicUsize::new(0));
        let slow_commit = {
            let committed = Arc::clone(&committed);
            async move {
                tokio::time::sleep(Duration::from_millis(2000)).await;
                committed.fetch_add(1, Ordering::SeqCst);
            }
        };
        let started = std::time::Instant::now();
        let outcome = stale.fence(slow_commit).await;
        assert!(matches!(outcome, Err(LakeError::LeaseLost { .. })), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_millis(600), "stopped before its expiry: {:?}", started.elapsed());
        assert!(Lease::try_take(store(dir.path()), folder(), quick()).await.unwrap().is_none(), "grace not over yet");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let taker = Lease::try_take(store(dir.path()), folder(), quick()).await.unwrap().expect("expired and graced");
        assert_eq!(committed.load(Ordering::SeqCst), 0, "the stale holder's work never finished");
        // The stale holder learns it lost even once its clock says otherwise.
        assert!(matches!(stale.fence(async {}).await, Err(LakeError::LeaseLost { .. })));
        assert_eq!(taker.fence(async { 1 }).await.unwrap(), 1);
    }
}
