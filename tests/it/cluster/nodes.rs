//! A Cassandra cluster of this test binary, operated through the project's
//! `scripts/cassandra` (the same commands people use): its own state dir,
//! and three loopback addresses nothing else listens on. Stopped when
//! dropped, however the test ends.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;

/// The CQL port of every node (each node has its own address).
const CQL_PORT: u16 = 9042;
/// The internode port of every node.
const STORAGE_PORT: u16 = 7000;

/// A running cluster.
pub struct Cluster {
    state: PathBuf,
    addresses: Vec<Ipv4Addr>,
}

impl Cluster {
    /// Starts `nodes` nodes, one at a time, on the first block of loopback
    /// addresses `127.0.K.1..=nodes` whose ports are all free (so a cluster
    /// some killed earlier run left behind does not fail this one).
    pub fn start(state: PathBuf, nodes: u8) -> Self {
        let free =
            |address: Ipv4Addr| [CQL_PORT, STORAGE_PORT].iter().all(|&port| TcpListener::bind((address, port)).is_ok());
        let addresses = (11..60)
            .map(|block| (1..=nodes).map(|node| Ipv4Addr::new(127, 0, block, node)).collect::<Vec<_>>())
            .find(|block| block.iter().all(|&address| free(address)))
            .expect("a free block of loopback addresses for the test's cluster");
        let cluster = Self { state, addresses };
        cluster.script(&["start", "--nodes", &nodes.to_string()]);
        cluster
    }

    /// `host:port` of every node, comma-separated.
    pub fn contact_points(&self) -> String {
        self.addresses.iter().map(|address| format!("{address}:{CQL_PORT}")).collect::<Vec<_>>().join(",")
    }

    /// SIGKILLs node `n` (1-based).
    pub fn kill_node(&self, n: u8) {
        self.script(&["kill-node", &n.to_string()]);
    }

    /// Stops node `n` gracefully (SIGTERM).
    pub fn stop_node(&self, n: u8) {
        self.script(&["stop-node", &n.to_string()]);
    }

    /// Starts node `n` again and waits until it answers CQL.
    pub fn start_node(&self, n: u8) {
        self.script(&["start-node", &n.to_string()]);
    }

    /// A session whose requests every replica must answer (consistency ALL).
    pub async fn session_at_all(&self) -> Arc<Session> {
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::All)
            .request_timeout(Some(Duration::from_secs(30)))
            .build()
            .into_handle();
        let session = SessionBuilder::new()
            .known_nodes(self.contact_points().split(','))
            .user("cassandra", "cassandra")
            .default_execution_profile_handle(profile)
            .build()
            .await
            .expect("a session on the cluster");
        Arc::new(session)
    }

    fn script(&self, args: &[&str]) {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "scripts/cassandra {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cassandra");
        let addresses = self.addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        Command::new(script)
            .args(args)
            .env("CASSANDRA_HOME_DIR", &self.state)
            .env("CASSANDRA_ADDRESSES", addresses)
            .env("CASSANDRA_NODES", self.addresses.len().to_string())
            .env_remove("CASSANDRA_ADDRESS")
            .env_remove("CASSANDRA_PORT")
            .env_remove("CASSANDRA_STORAGE_PORT")
            .output()
            .expect("scripts/cassandra runs")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // No assertion here: a panic while a failed test unwinds aborts.
        let output = self.run(&["stop"]);
        if !output.status.success() {
            eprintln!("scripts/cassandra stop: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
}
