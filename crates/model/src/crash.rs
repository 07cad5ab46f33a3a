//! Crash points, for the torture suite: with `SESSIONLAKE_CRASH_AT=<point>:<n>`
//! in its environment, the process dies the n-th time it passes `<point>` —
//! `abort()`, so no destructor runs, no buffer is flushed and no lock is
//! released: what a SIGKILL or a power cut leaves behind at that instant.
//!
//! The points sit where a crash is most likely to break exactly-once
//! processing: between a commit and what follows it, between a write and
//! its progress marker. Unset (always, outside the tests), a point costs one
//! check of a value read once per process. (The `fail` crate's actions —
//! panic, return, sleep — cannot end the process at a point, and its points
//! are compiled out of the binary the tests run unless a feature is on.)

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

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
pub fn point(name: &str) {
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
