//! The insights' error type: the lake failed, the gold table is not there
//! yet, or the chart could not be drawn or written.

use std::path::PathBuf;

use sessionlake_lake::LakeError;

/// Everything that can stop [`compute`](crate::compute) or
/// [`render_chart`](crate::render_chart).
#[derive(Debug, thiserror::Error)]
pub enum InsightsError {
    /// Opening or querying the lake failed.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// The gold table has not been created yet: nothing has been processed.
    #[error("no sessions table yet: run `sessionlake run` (or ingest, raw, sessions) first")]
    NoSessionsTable,
    /// A file or folder for the chart could not be created or written.
    #[error("{action} {path}: {source}")]
    ChartIo {
        /// What was being done ("creating", "writing", …).
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Drawing the chart failed.
    #[error("drawing the chart {path}: {message}")]
    Chart {
        /// The chart's file.
        path: PathBuf,
        /// What went wrong, in one line.
        message: String,
    },
}

/// The insights' result type.
pub type Result<T, E = InsightsError> = std::result::Result<T, E>;

impl InsightsError {
    pub(crate) fn chart_io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| InsightsError::ChartIo { action, path, source }
    }
}
