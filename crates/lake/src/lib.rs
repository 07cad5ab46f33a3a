//! sessionlake's data lake: three zones of files and Delta Lake tables.
//!
//! ```text
//!  source URL | file
//!     |  landing::Ingest        bytes as received + manifest (sha256, size, source, time)
//!     v
//!  landingzone/assignment_data/<file>
//!     |  raw::RawStage          stream-decompress, parse, one MERGE (insert-only) per event date
//!     |                         raw::quarantine        a file that does not decompress: set aside, listed, retried or dropped
//!     v                         raw::live::LiveIngest  POST /events: group commit, same MERGE, compaction
//!  raw/assignment_data/r_session_events            (+ r_session_events_rejected)
//!     |  sessions::SessionsStage   change feed of new raw versions, group by session, MERGE upsert
//!     v
//!  use_case/uc_assignment/uc_delta_session_events  (change data feed on, for serving)
//!
//!  watch::{LogWatch, LandingWatch}   cheap checks for new versions / landed files, so idle followers cost nothing
//!  maintain::Maintain   per table: compaction, vacuum, checkpoint, log cleanup — keeping what a lagging
//!                       reader of a change feed still needs; rebuild: snapshots for a reader whose history is gone
//! ```
//!
//! Each stage is a struct of its inputs with one `run` returning a report.
//! Exactly-once progress is kept inside the Delta tables themselves, as
//! application transactions committed together with the data.

mod commit_retry;
pub mod error;
mod expr;
mod keys;
pub mod lake;
pub mod landing;
pub mod lease;
pub mod maintain;
pub mod progress;
pub mod query;
pub mod raw;
pub mod rebuild;
pub mod schema;
pub mod sessions;
#[cfg(feature = "testing")]
pub mod testing;
mod txn;
pub mod watch;

pub use error::{LakeError, Result};
pub use lake::Lake;
