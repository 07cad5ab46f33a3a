//! sessionlake's domain model: what an event is, how a line of the input file
//! becomes one (or a rejection with a stable reason), the names of every
//! table and column, and the service clock. No I/O lives here.
//!
//! ```text
//!  line bytes --parse_line--> Event ----------------> raw table (r_session_events)
//!                    \------> Rejection{reason} -----> r_session_events_rejected
//! ```

pub mod clock;
pub mod crash;
pub mod event;
pub mod ids;
pub mod parse;
pub mod reject;
pub mod tables;
pub mod time;

pub use clock::Clock;
pub use event::{Event, EventKind};
pub use parse::{MAX_LINE_BYTES, parse_line};
pub use reject::{RejectReason, Rejection};
