//! An opt-in micro-cache of first pages of started sessions.
//!
//! `GET /models/started_sessions/{country}/{hours}` has a small key space
//! (a country, 1 to 24 hours, a page size) and is read far more often than
//! its answer changes. With a maximum age `A` set, the first page of each
//! key is kept, serialized, for at most `A`: once it is `A / 2` old, the
//! next request for it starts one refresh in the background and is still
//! answered from the cache, so a steady load never waits for Cassandra.
//! Concurrent misses of one key share one read. Errors are never cached.
//!
//! The cost is freshness: an answer may be up to `A` old (its window ends
//! where the clock was when it was read, and its next-page token keeps that
//! window). Later pages (with a `page_token`) are never cached.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use prometheus::IntCounterVec;

use crate::error::ApiError;

/// Most bytes of cached answers kept (least recently used go first).
const MAX_CACHED_BYTES: u64 = 64 * 1024 * 1024;

/// What a cached first page is found by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StartedKey {
    /// The country, upper case.
    pub country: String,
    /// The window, in hours.
    pub hours: u32,
    /// Items per page.
    pub page_size: usize,
}

/// A cached answer: the JSON body, when it was read, whether a refresh runs.
struct Entry {
    body: Bytes,
    read_at: Instant,
    refreshing: AtomicBool,
}

impl Entry {
    fn new(body: Bytes) -> Arc<Self> {
        Arc::new(Self { body, read_at: Instant::now(), refreshing: AtomicBool::new(false) })
    }
}

/// The cache (cheap to clone: clones share the entries).
#[derive(Clone)]
pub struct StartedCache {
    entries: moka::future::Cache<StartedKey, Arc<Entry>>,
    refresh_after: Duration,
    outcomes: IntCounterVec,
}

impl StartedCache {
    /// A cache whose answers are at most `max_age` old, or none when
    /// `max_age` is zero. `outcomes` counts hits, misses and refreshes.
    pub fn new(max_age: Duration, outcomes: IntCounterVec) -> Option<Self> {
        if max_age.is_zero() {
            return None;
        }
        let entries = moka::future::Cache::builder()
            .time_to_live(max_age)
            .weigher(|_key: &StartedKey, entry: &Arc<Entry>| u32::try_from(entry.body.len()).unwrap_or(u32::MAX))
            .max_capacity(MAX_CACHED_BYTES)
            .build();
        Some(Self { entries, refresh_after: max_age / 2, outcomes })
    }

    /// The cached body of `key`, or the body `read` returns (then cached).
    /// A body past half its age is refreshed in the background by `read`.
    pub async fn get<R, F>(&self, key: StartedKey, read: R) -> Result<Bytes, ApiError>
    where
        R: Fn() -> F + Send + 'static,
        F: Future<Output = Result<Bytes, ApiError>> + Send + 'static,
    {
        let mut missed = false;
        let entry = self
            .entries
            .try_get_with(key.clone(), async {
                missed = true;
                read().await.map(Entry::new)
            })
            .await
            .map_err(|error| ApiError::clone(&error))?;
        self.outcomes.with_label_values(&[if missed { "miss" } else { "hit" }]).inc();
        if !missed && entry.read_at.elapsed() >= self.refresh_after && !entry.refreshing.swap(true, Ordering::AcqRel) {
            self.outcomes.with_label_values(&["refresh"]).inc();
            let entries = self.entries.clone();
            let stale = Arc::clone(&entry);
            tokio::spawn(async move {
                match read().await {
                    Ok(fresh) => entries.insert(key, Entry::new(fresh)).await,
                    Err(error) => {
                        // Keep answering the old body until it expires; the
                        // next request after this one tries again.
                        tracing::debug!(status = %error.status, detail = %error.detail, "refresh of a cached page failed");
                        stale.refreshing.store(false, Ordering::Release);
                    }
                }
            });
        }
        Ok(entry.body.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use axum::http::StatusCode;
    use prometheus::Opts;

    use super::*;

    fn cache(max_age: Duration) -> StartedCache {
        let outcomes = IntCounterVec::new(Opts::new("outcomes", "test"), &["outcome"]).unwrap();
        StartedCache::new(max_age, outcomes).unwrap()
    }

    fn key() -> StartedKey {
        StartedKey { country: "FI".into(), hours: 3, page_size: 1000 }
    }

    /// A reader that answers its call number, counting calls.
    fn counting_reader(
        calls: &Arc<AtomicUsize>,
    ) -> impl Fn() -> futures::future::BoxFuture<'static, Result<Bytes, ApiError>> + Send + 'static {
        let calls = Arc::clone(calls);
        move || {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move { Ok(Bytes::from(call.to_string())) })
        }
    }

    #[test]
    fn zero_age_means_no_cache() {
        let outcomes = IntCounterVec::new(Opts::new("outcomes", "test"), &["outcome"]).unwrap();
        assert!(StartedCache::new(Duration::ZERO, outcomes).is_none());
    }

    #[tokio::test]
    async fn fresh_answers_come_from_the_cache_and_old_ones_are_refreshed_behind() {
        let cache = cache(Duration::from_millis(400));
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(cache.get(key(), counting_reader(&calls)).await.unwrap(), "1");
        assert_eq!(cache.get(key(), counting_reader(&calls)).await.unwrap(), "1");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a fresh entry is not read again");

        // Past half its age: answered from the cache, refreshed in the background, once.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cache.get(key(), counting_reader(&calls)).await.unwrap(), "1");
        assert_eq!(cache.get(key(), counting_reader(&calls)).await.unwrap(), "1");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh, however many requests");
        assert_eq!(cache.get(key(), counting_reader(&calls)).await.unwrap(), "2");

        // Nobody asks for longer than the maximum age: the entry is gone, the next request reads.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(cache.get(key(), counting_reader(&calls)).await.unwrap(), "3");
        let other = StartedKey { hours: 4, ..key() };
        assert_eq!(cache.get(other, counting_reader(&calls)).await.unwrap(), "4", "keys do not share answers");
    }

    #[tokio::test]
    async fn errors_are_answered_but_not_kept() {
        let cache = cache(Duration::from_secs(60));
        let failing =
            || Box::pin(async { Err(ApiError::unavailable("down")) }) as futures::future::BoxFuture<'static, _>;
        assert_eq!(cache.get(key(), failing).await.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(cache.get(key(), counting_reader(&calls)).await.unwrap(), "1");
    }
}
