//! Test hooks, compiled in only with the `crash-points` feature (the tests
//! and the torture suite enable it; a release build has none).
//!
//! Crash points: with `SESSIONLAKE_CRASH_AT=<point>:<n>` in its
//! environment, a process built with the feature dies the n-th time it passes `<point>` —
//! `abort()`, so no destructor runs, no buffer is flushed and no lock is
//! released: what a SIGKILL or a power cut leaves behind at that instant.
//!
//! The points sit where a crash is most likely to break exactly-once
//! processing: between a commit and what follows it, between a write and
//! its progress marker. Without the feature a point is an empty function
//! and nothing reads the environment; with it and the variable unset, a
//! point costs one check of a value read once per process. (The `fail` crate's actions —
//! panic, return, sleep — cannot end the process at a point, and its points
//! are compiled out of the binary the tests run unless a feature is on.)
//!
//! Budgets: a [`StopAfter`] ends a stage early, as if the process died
//! there (sessions after n micro-batches, serve after n requests), for
//! tests that run a stage in-process and cannot abort.

/// The environment variable naming the crash point and the hit to die on.
pub const CRASH_AT_ENV: &str = "SESSIONLAKE_CRASH_AT";

/// Every crash point, in data-flow order (the torture suite picks from these).
pub const POINTS: &[&str] = &[
    INGEST_BEFORE_RENAME,
    INGEST_BEFORE_MANIFEST,
    RAW_AFTER_REJECTED_COMMIT,
    RAW_AFTER_CHUNK_MERGE,
    SESSIONS_AFTER_MERGE,
    SERVE_AFTER_REQUEST,
    SERVE_BEFORE_PROGRESS,
];

/// Ingest: the landed bytes are synced in the temp file, not renamed yet.
pub const INGEST_BEFORE_RENAME: &str = "ingest.before_rename";
/// Ingest: the file has its final name, the manifest does not list it yet.
pub const INGEST_BEFORE_MANIFEST: &str = "ingest.before_manifest";
/// Raw: a file's rejected lines are committed, its dates not merged yet.
pub const RAW_AFTER_REJECTED_COMMIT: &str = "raw.after_rejected_commit";
/// Raw: one chunk's MERGE is committed (with its progress marker).
pub const RAW_AFTER_CHUNK_MERGE: &str = "raw.after_chunk_merge";
/// Sessions: one gold MERGE is committed (with the raw version it covers).
pub const SESSIONS_AFTER_MERGE: &str = "sessions.after_merge";
/// Serve: one CQL write is acknowledged, in the middle of a burst.
pub const SERVE_AFTER_REQUEST: &str = "serve.after_request";
/// Serve: every row of a gold range is acknowledged, its progress not saved.
pub const SERVE_BEFORE_PROGRESS: &str = "serve.before_progress";

/// Dies here if this is the configured point's n-th hit.
#[cfg(feature = "crash-points")]
pub fn point(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let value = std::env::var(CRASH_AT_ENV).ok()?;
        let (point, hit) = value.rsplit_once(':')?;
        Some((point.to_string(), hit.parse().ok()?))
    });
    let Some((point, hit)) = target else { return };
    if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *hit {
        eprintln!("crash point {name} #{hit}: aborting");
        std::process::abort();
    }
}

/// Without the `crash-points` feature, a crash point does nothing.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// A test's budget of units of work (micro-batches, requests) after which a
/// stage stops as if the process died. Without the `crash-points` feature it
/// holds nothing and is never reached, so only tests can set one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopAfter {
    #[cfg(feature = "crash-points")]
    limit: Option<u64>,
}

impl StopAfter {
    /// No budget: run to the end.
    pub const NEVER: Self = Self {
        #[cfg(feature = "crash-points")]
        limit: None,
    };

    /// Stop once `limit` units are done.
    #[cfg(feature = "crash-points")]
    pub fn after(limit: u64) -> Self {
        Self { limit: Some(limit) }
    }

    /// [`StopAfter::after`] the limit when there is one, else [`StopAfter::NEVER`].
    #[cfg(feature = "crash-points")]
    pub fn from_option(limit: Option<u64>) -> Self {
        Self { limit }
    }

    /// Whether `done` units use up the budget.
    pub fn is_reached(&self, done: u64) -> bool {
        #[cfg(feature = "crash-points")]
        return self.limit.is_some_and(|limit| done >= limit);
        #[cfg(not(feature = "crash-points"))]
        {
            let _ = done;
            false
        }
    }
}
