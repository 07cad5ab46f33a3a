//! The Cassandra error type, and its [`ErrorKind`]: whether the failure is
//! Cassandra being unavailable for now (retry later) or something retrying
//! cannot fix (the API answers 503 for the first, 500 for the second).

use scylla::errors::{
    DbError, ExecutionError, MetadataError, PrepareError, RequestAttemptError, SchemaAgreementError, UseKeyspaceError,
};

/// What kind of failure an error is, for callers that decide between
/// waiting and giving up (retry loops, the API's status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Cassandra cannot answer now: no node reachable, a timeout, an
    /// overloaded or starting node, a broken connection. Retrying later may
    /// succeed.
    Unavailable,
    /// Retrying will not help: a bad setting or credentials, CQL or data
    /// that does not fit the schema, rows that cannot be decoded, a server
    /// or protocol error.
    Permanent,
}

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
        move |error| CassandraError::Cassandra {
            what,
            transient: prepare_kind(&error) == ErrorKind::Unavailable,
            message: error.to_string(),
        }
    }

    /// Whether Cassandra is unavailable for now or the failure is permanent.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CassandraError::Connect { .. } | CassandraError::Cassandra { transient: true, .. } => {
                ErrorKind::Unavailable
            }
            CassandraError::Config(_) | CassandraError::Login { .. } | CassandraError::Cassandra { .. } => {
                ErrorKind::Permanent
            }
        }
    }

    /// Whether retrying later may succeed ([`ErrorKind::Unavailable`]).
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }
}

/// Whether a failed request may succeed when retried later: no node could
/// take it, it timed out, or a node was overloaded, starting or cut off.
/// Everything else — the request itself (syntax, schema, values,
/// permissions), undecodable answers, server and protocol errors — is not.
pub fn is_transient(error: &ExecutionError) -> bool {
    execution_kind(error) == ErrorKind::Unavailable
}

/// The kind of a failed request.
pub fn execution_kind(error: &ExecutionError) -> ErrorKind {
    use ErrorKind::{Permanent, Unavailable};
    match error {
        ExecutionError::EmptyPlan | ExecutionError::ConnectionPoolError(_) | ExecutionError::RequestTimeout(_) => {
            Unavailable
        }
        ExecutionError::LastAttemptError(attempt) => attempt_kind(attempt),
        ExecutionError::PrepareError(prepare) => prepare_kind(prepare),
        ExecutionError::UseKeyspaceError(UseKeyspaceError::RequestError(attempt)) => attempt_kind(attempt),
        ExecutionError::UseKeyspaceError(UseKeyspaceError::RequestTimeout(_)) => Unavailable,
        ExecutionError::SchemaAgreementError(agreement) => match agreement {
            SchemaAgreementError::ConnectionPoolError(_)
            | SchemaAgreementError::Timeout(_)
            | SchemaAgreementError::RequiredHostAbsent(_) => Unavailable,
            SchemaAgreementError::PrepareError(prepare) => prepare_kind(prepare),
            SchemaAgreementError::RequestError(attempt) => attempt_kind(attempt),
            _ => Permanent,
        },
        ExecutionError::MetadataError(MetadataError::ConnectionPoolError(_) | MetadataError::FetchError(_)) => {
            Unavailable
        }
        _ => Permanent,
    }
}

fn prepare_kind(error: &PrepareError) -> ErrorKind {
    match error {
        PrepareError::ConnectionPoolError(_) => ErrorKind::Unavailable,
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_kind(first_attempt),
        _ => ErrorKind::Permanent,
    }
}

fn attempt_kind(attempt: &RequestAttemptError) -> ErrorKind {
    match attempt {
        RequestAttemptError::BrokenConnectionError(_) | RequestAttemptError::UnableToAllocStreamId => {
            ErrorKind::Unavailable
        }
        RequestAttemptError::DbError(DbError::Unauthorized, message) if is_auth_unavailable(message) => {
            ErrorKind::Unavailable
        }
        RequestAttemptError::DbError(db, _) => db_kind(db),
        _ => ErrorKind::Permanent,
    }
}

/// Whether an "unauthorized" answer is really the auth tables being
/// unreadable: the node checks a role's permissions by reading
/// `system_auth`, at QUORUM for the default superuser, and says
/// "Unable to perform authorization ...: Cannot achieve consistency level
/// QUORUM" while too few replicas are up (a login says the same). That
/// heals when they return; a real lack of permission does not.
pub(crate) fn is_auth_unavailable(message: &str) -> bool {
    message.contains("Cannot achieve consistency level")
}

fn db_kind(error: &DbError) -> ErrorKind {
    match error {
        DbError::Unavailable { .. }
        | DbError::Overloaded
        | DbError::IsBootstrapping
        | DbError::ReadTimeout { .. }
        | DbError::WriteTimeout { .. }
        | DbError::RateLimitReached { .. }
        // The node lost its prepared statements (it restarted): the
        // driver prepares them again on the next attempt.
        | DbError::Unprepared { .. } => ErrorKind::Unavailable,
        _ => ErrorKind::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scylla::errors::{BadQuery, ConnectionPoolError};

    use super::*;

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "message".into()))
    }

    #[test]
    fn unavailability_is_transient_and_everything_else_permanent() {
        let unavailable = [
            ExecutionError::RequestTimeout(Duration::from_secs(2)),
            ExecutionError::ConnectionPoolError(ConnectionPoolError::Initializing),
            ExecutionError::EmptyPlan,
            db(DbError::Overloaded),
            db(DbError::IsBootstrapping),
            ExecutionError::LastAttemptError(RequestAttemptError::UnableToAllocStreamId),
            ExecutionError::PrepareError(PrepareError::ConnectionPoolError(ConnectionPoolError::Initializing)),
            // Two of three replicas of system_auth down: a permission check fails.
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(
                DbError::Unauthorized,
                "Unable to perform authorization of super-user permission: Cannot achieve consistency level QUORUM"
                    .into(),
            )),
        ];
        for error in &unavailable {
            assert_eq!(execution_kind(error), ErrorKind::Unavailable, "{error}");
        }
        let permanent = [
            db(DbError::SyntaxError),
            db(DbError::Invalid),
            db(DbError::Unauthorized),
            db(DbError::ServerError),
            db(DbError::ProtocolError),
            db(DbError::Other(0x1234)),
            ExecutionError::BadQuery(BadQuery::PartitionKeyExtraction),
            ExecutionError::PrepareError(PrepareError::PreparedStatementIdsMismatch),
            ExecutionError::PrepareError(PrepareError::AllAttemptsFailed {
                first_attempt: RequestAttemptError::DbError(DbError::Invalid, "unconfigured table".into()),
            }),
        ];
        for error in &permanent {
            assert_eq!(execution_kind(error), ErrorKind::Permanent, "{error}");
        }
    }

    #[test]
    fn the_kind_of_an_error_follows_its_cause() {
        let timeout = CassandraError::execution("reading")(ExecutionError::RequestTimeout(Duration::from_secs(1)));
        assert_eq!(timeout.kind(), ErrorKind::Unavailable);
        assert!(timeout.is_transient());
        let invalid = CassandraError::execution("reading")(db(DbError::Invalid));
        assert_eq!(invalid.kind(), ErrorKind::Permanent);
        assert!(!invalid.is_transient());
        let connect = CassandraError::Connect { nodes: "127.0.0.1:9042".into(), message: "refused".into() };
        assert_eq!(connect.kind(), ErrorKind::Unavailable);
        let login = CassandraError::Login { nodes: "127.0.0.1:9042".into(), message: "bad password".into() };
        assert_eq!(login.kind(), ErrorKind::Permanent);
        assert_eq!(CassandraError::Config("port 0".into()).kind(), ErrorKind::Permanent);
    }
}
