//! Where Cassandra is and how to log in: the settings, their validation,
//! connecting with backoff while the cluster is not (yet) reachable, and
//! the execution profiles of reads and writes (consistency, timeouts,
//! speculative execution).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::{ExecutionProfile, ExecutionProfileHandle};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
use scylla::statement::Consistency;

use crate::error::{CassandraError, Result, is_auth_unavailable};
use crate::retry::retry_transient;

/// How to reach the serving store.
#[derive(Clone)]
pub struct CassandraConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// Login (PasswordAuthenticator).
    pub user: String,
    /// Password; never printed.
    pub password: String,
    /// Keyspace holding the serving tables.
    pub keyspace: String,
    /// The keyspace's replication, a CQL map literal, used when creating it.
    pub replication: String,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// Consistency of the API's reads.
    pub read_consistency: Consistency,
    /// Consistency of `serve`'s writes and of the progress it records.
    pub write_consistency: Consistency,
    /// How long one write may take, retries on other nodes included.
    pub write_timeout: Duration,
}

impl fmt::Debug for CassandraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraConfig")
            .field("nodes", &self.nodes)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("keyspace", &self.keyspace)
            .field("replication", &self.replication)
            .field("read_consistency", &self.read_consistency)
            .field("write_consistency", &self.write_consistency)
            .finish()
    }
}

impl CassandraConfig {
    /// The default replication: one copy, for a single local node.
    pub const DEFAULT_REPLICATION: &str = "{'class': 'SimpleStrategy', 'replication_factor': 1}";

    /// Checks the settings that end up inside CQL text (the keyspace name
    /// and the replication map cannot be bound as values).
    pub fn validate(&self) -> Result<()> {
        if self.nodes.is_empty() || self.nodes.iter().any(|node| node.trim().is_empty()) {
            return Err(CassandraError::Config("at least one Cassandra node (host:port) is needed".into()));
        }
        let keyspace_ok = self.keyspace.len() <= 48
            && self.keyspace.starts_with(|c: char| c.is_ascii_alphabetic())
            && self.keyspace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !keyspace_ok {
            return Err(CassandraError::Config(format!(
                "keyspace {:?} must be 1 to 48 letters, digits or underscores, starting with a letter",
                self.keyspace
            )));
        }
        let replication = self.replication.trim();
        let replication_ok = replication.starts_with('{')
            && replication.ends_with('}')
            && replication.chars().all(|c| c.is_ascii_alphanumeric() || " _-.:,'{}".contains(c));
        if !replication_ok {
            return Err(CassandraError::Config(format!(
                "replication {:?} must be a CQL map such as {}",
                self.replication,
                Self::DEFAULT_REPLICATION
            )));
        }
        Ok(())
    }

    /// The profile of the API's reads: read consistency, `timeout` for the
    /// whole request, and one speculative execution on another replica
    /// when the first has not answered after [`SPECULATIVE_READ_DELAY`]
    /// (reads are idempotent, so the driver may also retry them elsewhere).
    pub fn read_profile(&self, timeout: Duration) -> ExecutionProfileHandle {
        let speculation =
            SimpleSpeculativeExecutionPolicy { max_retry_count: 1, retry_interval: SPECULATIVE_READ_DELAY };
        ExecutionProfile::builder()
            .consistency(self.read_consistency)
            .request_timeout(Some(timeout))
            .speculative_execution_policy(Some(Arc::new(speculation)))
            .build()
            .into_handle()
    }

    /// The profile of writes (rows and progress, also read back at this
    /// consistency so that a saved progress is seen): write consistency and
    /// the write timeout. Every write is an upsert or a delete by primary
    /// key, marked idempotent, so the driver may retry it on another node.
    pub fn write_profile(&self) -> ExecutionProfileHandle {
        ExecutionProfile::builder()
            .consistency(self.write_consistency)
            .request_timeout(Some(self.write_timeout))
            .build()
            .into_handle()
    }

    /// The contact points as one string, for messages.
    pub fn nodes_text(&self) -> String {
        self.nodes.join(",")
    }

    /// One connection attempt.
    pub async fn connect(&self) -> Result<Arc<Session>> {
        self.validate()?;
        let session = SessionBuilder::new()
            .known_nodes(&self.nodes)
            .user(&self.user, &self.password)
            .connection_timeout(self.connect_timeout)
            .build()
            .await
            .map_err(|error| {
                let message = error.to_string();
                if is_login_failure(&message) {
                    CassandraError::Login { nodes: self.nodes_text(), message }
                } else {
                    CassandraError::Connect { nodes: self.nodes_text(), message }
                }
            })?;
        Ok(Arc::new(session))
    }

    /// Connects, retrying with backoff while no node answers, for at most
    /// `patience` (forever when `None`). Each wait is logged with its reason.
    /// Wrong credentials are not retried.
    pub async fn connect_with_retry(&self, patience: Option<Duration>) -> Result<Arc<Session>> {
        retry_transient(patience, || self.connect()).await
    }
}

/// How long a read waits for its first replica before asking another.
pub const SPECULATIVE_READ_DELAY: Duration = Duration::from_millis(100);

/// Parses a consistency level by its CQL name (`LOCAL_QUORUM`, `quorum`,
/// `ONE`, ...). `for_reads` refuses the write-only levels (`ANY`,
/// `EACH_QUORUM`); the serial levels are for lightweight transactions only.
pub fn parse_consistency(text: &str, for_reads: bool) -> std::result::Result<Consistency, String> {
    let level = match text.trim().to_ascii_uppercase().replace('-', "_").as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        _ => {
            return Err(format!(
                "unknown consistency {text:?}: use ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, LOCAL_ONE \
                 (writes also ANY, EACH_QUORUM)"
            ));
        }
    };
    if for_reads && matches!(level, Consistency::Any | Consistency::EachQuorum) {
        return Err(format!("{level} is a write-only consistency"));
    }
    Ok(level)
}

/// Whether a failed connection is a refused login. A login the node could
/// not check because too few replicas of `system_auth` are up ("Cannot
/// achieve consistency level") is unavailability, not wrong credentials.
fn is_login_failure(message: &str) -> bool {
    if is_auth_unavailable(message) {
        return false;
    }
    let message = message.to_ascii_lowercase();
    message.contains("authentication") || message.contains("bad credentials") || message.contains("unauthorized")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_that_could_not_be_checked_is_not_a_wrong_password() {
        assert!(is_login_failure("Authentication failed: Provided username cassandra and/or password are incorrect"));
        assert!(!is_login_failure(
            "Authentication error: Unable to perform authentication: Cannot achieve consistency level QUORUM"
        ));
        assert!(!is_login_failure("Connection refused (os error 111)"));
    }

    #[test]
    fn consistency_levels_parse_by_their_cql_names() {
        assert_eq!(parse_consistency("LOCAL_QUORUM", true), Ok(Consistency::LocalQuorum));
        assert_eq!(parse_consistency(" local-quorum ", true), Ok(Consistency::LocalQuorum));
        assert_eq!(parse_consistency("all", true), Ok(Consistency::All));
        assert_eq!(parse_consistency("ANY", false), Ok(Consistency::Any));
        assert!(parse_consistency("ANY", true).unwrap_err().contains("write-only"));
        assert!(parse_consistency("EACH_QUORUM", true).is_err());
        assert!(parse_consistency("SERIAL", false).unwrap_err().contains("unknown consistency"));
        assert!(parse_consistency("", false).is_err());
    }
}
