//! The lake's error type. Bad *data* is never an error here: it becomes a
//! rejected row. These are failures of configuration, I/O or storage.

use std::path::PathBuf;

/// Everything that can stop a lake stage.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A local file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "creating", …).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An object of the lake (on local disk or an object store) could not
    /// be read or written.
    #[error("{action} {location}: {summary}")]
    Store {
        /// What was being done ("reading", "creating", …).
        action: &'static str,
        /// The object's location under the lake root.
        location: String,
        /// The error in one line (an S3 server's XML body reduced to its
        /// code and message).
        summary: String,
        /// The underlying error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The lake location is not one the lake can use.
    #[error("lake location {location}: {why}")]
    Location {
        /// The location as given.
        location: String,
        /// What is wrong with it.
        why: String,
    },
    /// A lease ran out (or was taken over) before its work was done: the
    /// work was stopped before it could commit.
    #[error("lease {lease} lost: {why}")]
    LeaseLost {
        /// The lease.
        lease: String,
        /// Why.
        why: String,
    },
    /// Downloading a source failed.
    #[error("downloading {url}: {message}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong, in one line.
        message: String,
    },
    /// The source is not what the lake accepts (e.g. not bzip2).
    #[error("{source_name} is not a bzip2 file (it starts with {magic:?}, expected \"BZh\")")]
    NotBzip2 {
        /// The source as given.
        source_name: String,
        /// Its first bytes.
        magic: String,
    },
    /// A landed file is unreadable as bzip2 (truncated or corrupt).
    #[error("decompressing {path}: {message}")]
    Corrupt {
        /// The landed file.
        path: PathBuf,
        /// The decoder's complaint.
        message: String,
    },
    /// The landing manifest is damaged.
    #[error("landing manifest {path} line {line}: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A Delta Lake operation failed.
    #[error("delta table {table}: {source}")]
    Delta {
        /// The table's name.
        table: &'static str,
        /// The underlying error.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// A DataFusion query failed.
    #[error("query on {table}: {source}")]
    Query {
        /// The table's name.
        table: &'static str,
        /// The underlying error.
        #[source]
        source: Box<deltalake::datafusion::error::DataFusionError>,
    },
    /// Building Arrow data failed (a bug rather than bad input).
    #[error("arrow: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    /// The history a change-feed reader asked for is gone: a log entry or a
    /// data file of versions `version..` was removed (by `maintain` told to
    /// ignore lagging readers, by a retention shorter than the lag, or by
    /// hand). The reader must not skip those versions: it rebuilds from a
    /// snapshot of the table instead (see [`crate::rebuild`]).
    #[error("table {table}: the history from version {version} on is gone ({missing}); rebuild from a snapshot")]
    HistoryGone {
        /// The table's name.
        table: &'static str,
        /// The first version of the range asked for that cannot be read
        /// (the range's first version when a data file is what is missing).
        version: u64,
        /// What is missing: a log entry or a data file.
        missing: String,
    },
    /// A table holds something the lake did not write.
    #[error("table {table}: {message}")]
    Unexpected {
        /// The table's name.
        table: &'static str,
        /// What was found.
        message: String,
    },
}

/// The lake's result type.
pub type Result<T, E = LakeError> = std::result::Result<T, E>;

impl LakeError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LakeError {
        let path = path.into();
        move |source| LakeError::Io { action, path, source }
    }

    pub(crate) fn store(
        action: &'static str,
        location: &object_store::path::Path,
    ) -> impl FnOnce(object_store::Error) -> LakeError {
        let location = location.to_string();
        move |source| LakeError::Store { action, location, summary: store_summary(&source), source: Box::new(source) }
    }

    pub(crate) fn delta(table: &'static str) -> impl FnOnce(deltalake::DeltaTableError) -> LakeError {
        move |source| LakeError::Delta { table, source: Box::new(source) }
    }

    pub(crate) fn query(
        table: &'static str,
    ) -> impl FnOnce(deltalake::datafusion::error::DataFusionError) -> LakeError {
        move |source| LakeError::Query { table, source: Box::new(source) }
    }
}

/// An object-store error in one line: an S3 error body (XML) reduced to its
/// `Code` and `Message`, and a hint when the store refused the credentials.
pub(crate) fn store_summary(error: &object_store::Error) -> String {
    let text = error.to_string();
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        Some(text[start..].split(close).next()?.trim().to_string())
    };
    let mut summary = match (between("<Code>", "</Code>"), text.find('<')) {
        (Some(code), Some(xml)) => {
            let message = between("<Message>", "</Message>").unwrap_or_default();
            format!("{} {code}: {message}", text[..xml].trim_end())
        }
        _ => text.clone(),
    };
    if matches!(error, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }) {
        summary.push_str(" (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
    }
    summary.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its causes on one line, each said once. Libraries hide the
/// useful part in the source chain (reqwest's "connection refused"), and
/// many repeat their source's text in their own, which printing every level
/// would say again (found by the torture suite's full-disk test).
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = Some(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        cause = current.source();
    }
    parts.join(": ")
}
