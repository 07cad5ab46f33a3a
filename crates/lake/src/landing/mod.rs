//! The landing zone (bronze): source files exactly as received, plus a
//! manifest of what landed. See [`Ingest`].

mod ingest;
mod manifest;

pub(crate) use ingest::sha256_of_file;
pub use ingest::{DEFAULT_IDLE_TIMEOUT, Ingest, LandingReport, Source};
pub use manifest::{LEGACY_MANIFEST_FILE, MANIFEST_DIR, Manifest, ManifestEntry, Recorded};
