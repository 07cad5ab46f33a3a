//! The landing zone (bronze): source files exactly as received, plus a
//! manifest of what landed. See [`Ingest`].

mod dir_watch;
mod fetch;
mod ingest;
mod manifest;

pub use dir_watch::{DirWatch, is_in_progress};
pub use fetch::{LocalCopy, local_copy};
pub use ingest::{DEFAULT_IDLE_TIMEOUT, Ingest, LandingReport, ORPHAN_AGE, Source};
pub use manifest::{LEGACY_MANIFEST_FILE, MANIFEST_DIR, Manifest, ManifestEntry, Recorded};
