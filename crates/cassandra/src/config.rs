//! Where Cassandra is and how to log in: the settings, their validation, and
//! connecting with backoff while the cluster is not (yet) reachable.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::error::{CassandraError, Result};
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
}

impl fmt::Debug for CassandraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraConfig")
            .field("nodes", &self.nodes)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("keyspace", &self.keyspace)
            .field("replication", &self.replication)
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

fn is_login_failure(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("authentication") || message.contains("bad credentials") || message.contains("unauthorized")
}
