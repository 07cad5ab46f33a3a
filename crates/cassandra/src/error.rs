//! The Cassandra error type.

use scylla::errors::{DbError, ExecutionError, PrepareError, RequestAttemptError};

/// Everything that can stop a Cassandra operation.
#[derive(Debug, thiserror::Error)]
pub enum CassandraError {
    /// A Cassandra setting is unusable (checked before connecting).
    #[error("invalid Cassandra setting: {0}")]
    Config(String),
    /// No node could be reached (or logged into) in time.
    #[error("connecting to Cassandra at {nodes}: {message}")]
    Connect {
        /// The contact points tried.
        nodes: String,
        /// The driver's last complaint.
        message: String,
    },
    /// The nodes answered but refused the login.
    #[error("logging in to Cassandra at {nodes}: {message} (check the user and password settings)")]
    Login {
        /// The contact points tried.
        nodes: String,
        /// The driver's complaint.
        message: String,
    },
    /// A CQL request failed.
    #[error("{what}: {message}")]
    Cassandra {
        /// What was being done.
        what: String,
        /// The driver's error, in one line.
        message: String,
        /// Whether retrying later may succeed (node down, timeout, overload).
        transient: bool,
    },
}

/// Result of a Cassandra operation.
pub type Result<T, E = CassandraError> = std::result::Result<T, E>;

impl CassandraError {
    /// Wraps a failed request, classifying it as transient or not.
    pub fn execution(what: impl Into<String>) -> impl FnOnce(ExecutionError) -> CassandraError {
        let what = what.into();
        move |error| CassandraError::Cassandra { what, transient: is_transient(&error), message: error.to_string() }
    }

    /// Wraps a failed prepare.
    pub fn prepare(what: impl Into<String>) -> impl FnOnce(PrepareError) -> CassandraError {
        let what = what.into();
        move |error| {
            let transient = match &error {
                PrepareError::AllAttemptsFailed { first_attempt } => attempt_is_transient(first_attempt),
                _ => true,
            };
            CassandraError::Cassandra { what, transient, message: error.to_string() }
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, CassandraError::Cassandra { transient: true, .. } | CassandraError::Connect { .. })
    }
}

/// Whether a failed request may succeed when retried later: the node was
/// unreachable, overloaded, timing out or starting. Errors in the request
/// itself (syntax, schema, permissions) are not.
pub fn is_transient(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::LastAttemptError(attempt) => attempt_is_transient(attempt),
        ExecutionError::PrepareError(PrepareError::AllAttemptsFailed { first_attempt }) => {
            attempt_is_transient(first_attempt)
        }
        ExecutionError::BadQuery(_) | ExecutionError::UseKeyspaceError(_) => false,
        _ => true,
    }
}

fn attempt_is_transient(attempt: &RequestAttemptError) -> bool {
    match attempt {
        RequestAttemptError::DbError(db, _) => !matches!(
            db,
            DbError::SyntaxError
                | DbError::Invalid
                | DbError::AlreadyExists { .. }
                | DbError::FunctionFailure { .. }
                | DbError::AuthenticationError
                | DbError::Unauthorized
                | DbError::ConfigError
        ),
        RequestAttemptError::SerializationError(_) | RequestAttemptError::CqlRequestSerialization(_) => false,
        _ => true,
    }
}
