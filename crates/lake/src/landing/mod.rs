//! The landing zone (bronze): source files exactly as received, plus a
//! manifest of what landed. See [`Ingest`].

mod ingest;
mod manifest;

pub use ingest::{DEFAULT_IDLE_TIMEOUT, Ingest, LandingReport, Source};
pub use manifest::{Manifest, ManifestEntry};
