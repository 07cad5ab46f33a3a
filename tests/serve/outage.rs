//! Cassandra stops while `serve --follow` runs, and starts again: nothing
//! is lost. The test owns a second single-node Cassandra (own state dir and
//! ports, started by the project's script), so stopping it disturbs no
//! other test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

const CQL_PORT: &str = "19142";
const STORAGE_PORT: &str = "17100";

/// A Cassandra of this test only; stopped when dropped.
struct OwnCassandra {
    state: PathBuf,
}

impl OwnCassandra {
    fn script(&self, action: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cassandra");
        let output = Command::new(script)
            .arg(action)
            .env("CASSANDRA_HOME_DIR", &self.state)
            .env("CASSANDRA_PORT", CQL_PORT)
            .env("CASSANDRA_STORAGE_PORT", STORAGE_PORT)
            .env("CASSANDRA_HEAP", "512m")
            .output()
            .expect("scripts/cassandra runs");
        assert!(
            output.status.success(),
            "scripts/cassandra {action}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for OwnCassandra {
    fn drop(&mut self) {
        self.script("stop");
    }
}

/// Kills the follower when the test ends, however it ends.
struct Follower(Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn counts(nodes: &str, keyspace: &str) -> Option<(u64, u64)> {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(nodes)
        .user("cassandra", "cassandra")
        .build()
        .await
        .ok()?;
    let mut counts = [0u64; 2];
    for (slot, table) in counts.iter_mut().zip(["api_start_session_by_hour", "api_completed_sessions"]) {
        let result = session.query_unpaged(format!("SELECT COUNT(*) FROM {keyspace}.{table}"), ()).await.ok()?;
        let (count,): (i64,) = result.into_rows_result().ok()?.single_row().ok()?;
        *slot = count as u64;
    }
    Some((counts[0], counts[1]))
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_when_cassandra_stops_during_serve_follow() {
    let state = tempfile::tempdir().unwrap();
    let cassandra = OwnCassandra { state: state.path().join("cassandra") };
    cassandra.script("start");
    let nodes = format!("127.0.0.1:{CQL_PORT}");
    let keyspace = keyspace("outage");

    let mut lake = PreparedLake::new(1_500, 31);
    let log = state.path().join("serve.log");
    let follower = Follower(
        lake.serve(&nodes, &keyspace, &["--follow", "--poll-seconds", "0.2"])
            .env("SESSIONLAKE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let first = (lake.truth_sum("served_started_rows"), lake.truth_sum("served_completed_rows"));
    wait_until(Duration::from_secs(120), "the first file is served", || async {
        counts(&nodes, &keyspace).await == Some(first)
    })
    .await;
    let api = ApiProcess::start(&lake.lake, &nodes, &keyspace, None);
    api.wait_ready().await;
    assert_eq!(api.get("/models/started_sessions/IT/24", None).await.0, 200);

    // Down: new gold versions pile up while the follower waits and retries.
    cassandra.script("stop");
    lake.add_file(1_500, 32);
    wait_until(Duration::from_secs(20), "the API says it is not ready", || async {
        api.get("/ready", None).await.0 == 503
    })
    .await;
    let (status, body) = api.get("/models/started_sessions/IT/24", None).await;
    assert_eq!(status, 503, "data routes say 503 while Cassandra is down: {body}");
    assert_eq!(api.get("/health", None).await.0, 200);

    cassandra.script("start");
    wait_until(Duration::from_secs(180), "the API is ready again by itself", || async {
        api.get("/ready", None).await.0 == 200 && api.get("/models/started_sessions/IT/24", None).await.0 == 200
    })
    .await;
    let both = (lake.truth_sum("served_started_rows"), lake.truth_sum("served_completed_rows"));
    wait_until(Duration::from_secs(180), "both files are served", || async {
        counts(&nodes, &keyspace).await == Some(both)
    })
    .await;
    drop(follower);

    let session = connect(&nodes).await;
    assert_eq!(dump(&session, &keyspace).await, expected_rows(&lake.lake).await);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("Cassandra unavailable"), "the follower says why it waits: {log}");
    assert!(!log.contains("panicked"), "{log}");
}
