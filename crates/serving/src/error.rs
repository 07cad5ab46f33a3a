//! The serve stage's error type: Cassandra or the lake.

use sessionlake_cassandra::CassandraError;
use sessionlake_lake::LakeError;

/// Everything that can stop the serve stage.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// Cassandra refused or could not be reached.
    #[error(transparent)]
    Cassandra(#[from] CassandraError),
    /// Reading the gold table failed.
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// The serve stage's result type.
pub type Result<T, E = ServingError> = std::result::Result<T, E>;
