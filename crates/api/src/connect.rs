//! Connecting to Cassandra in the background: the API starts at once, says
//! 503 on /ready and the data routes until the reads are prepared, and
//! keeps retrying with backoff meanwhile (a node that is down, or a schema
//! not created yet, are both waited out).

use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use sessionlake_cassandra::CassandraConfig;
use sessionlake_cassandra::read::SessionReader;
use sessionlake_cassandra::retry::UNAVAILABLE;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::state::AppState;

/// Connects and prepares the reads, retrying until it succeeds, then
/// installs the reader in `state`.
pub fn connect_in_background(state: AppState, config: CassandraConfig, read_timeout: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let attempt = || async {
            let session = config.connect().await?;
            SessionReader::prepare(session, &config, read_timeout).await
        };
        let connected = attempt
            .retry(UNAVAILABLE)
            .notify(|error, delay| warn!("Cassandra not ready for the API ({error}); retrying in {delay:.1?}"))
            .await;
        match connected {
            Ok(reader) => {
                info!(nodes = %config.nodes_text(), keyspace = %config.keyspace, "Cassandra connected; API ready");
                state.set_store(Arc::new(reader));
            }
            // UNAVAILABLE retries without end: this is never reached.
            Err(error) => warn!("Cassandra never became ready for the API ({error})"),
        }
    })
}
