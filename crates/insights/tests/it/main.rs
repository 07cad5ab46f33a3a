//! Integration tests of the insights, one binary:
//!
//! - `answers`: on a lake built from generated data, the answers equal the
//!   generator's truth; a lake without a gold table gives a clear error
//! - `chart`: the chart is a real PNG of the right size, empty or not, and
//!   file-system failures are errors naming the path

mod answers;
mod chart;
mod util;
