//! The reference's questions about the data, answered with DataFusion SQL
//! over the gold table, and a bar chart of the completed sessions per country.
//!
//! ```text
//!  use_case/uc_assignment/uc_delta_session_events     gold: one row per session
//!     |  compute        one snapshot of the table, four SQL queries run concurrently
//!     v
//!  Insights { sessions, completed_by_country_top10, completed_by_player_top10, top_start_country_2016 }
//!     |  render_chart   plotters bitmap backend, PNG, bundled DejaVu Sans (no system fonts)
//!     v
//!  <path>.png
//! ```
//!
//! [`api_examples`] finds two API requests that return data as of the
//! service clock (what `sessionlake up` prints): the SQL about the gold
//! table lives here, not in the binary.
//!
//! The answers equal the data generator's ground truth
//! (`sessionlake_generator::Truth`) for a generated file; the tests hold
//! them to it.

mod chart;
mod error;
mod examples;
mod questions;

pub use chart::render_chart;
pub use error::{InsightsError, Result};
pub use examples::{ApiExamples, api_examples};
pub use questions::{Insights, compute};
