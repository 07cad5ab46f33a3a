//! Outages. Cassandra stops for 30 s while `serve --follow` and the API
//! run under load, and starts again: nothing is lost, the API says 503 (and
//! nothing worse) meanwhile and is back to 200 by itself. The test owns a
//! second single-node Cassandra (own state dir and ports, started by the
//! project's script), so stopping it disturbs no other test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::report;
use crate::support::*;

/// How long the node stays down.
const DOWN_FOR: Duration = Duration::from_secs(30);

/// The first CQL and internode ports tried; below the kernel's ephemeral
/// range, so no client connection takes them while the node is down.
const FIRST_PORTS: (u16, u16) = (19142, 17100);

/// A Cassandra of this test only; stopped when dropped.
struct OwnCassandra {
    state: PathBuf,
    cql_port: u16,
    storage_port: u16,
}

impl OwnCassandra {
    /// A node under `state` on the first pair of free ports, so a node some
    /// earlier, killed test run left behind does not fail this one.
    fn new(state: PathBuf) -> Self {
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        let (cql_port, storage_port) = (0..50)
            .map(|k| (FIRST_PORTS.0 + k, FIRST_PORTS.1 + k))
            .find(|&(cql, storage)| free(cql) && free(storage))
            .expect("a free pair of ports for the test's own Cassandra");
        Self { state, cql_port, storage_port }
    }

    fn script(&self, action: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cassandra");
        let output = Command::new(script)
            .arg(action)
            .env("CASSANDRA_HOME_DIR", &self.state)
            .env("CASSANDRA_PORT", self.cql_port.to_string())
            .env("CASSANDRA_STORAGE_PORT", self.storage_port.to_string())
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

/// The serving tables' row counts, on a new session (the node restarts).
async fn counts(nodes: &str, keyspace: &str) -> Option<(u64, u64)> {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(nodes)
        .user("cassandra", "cassandra")
        .build()
        .await
        .ok()?;
    served_counts(&session, keyspace).await
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_when_cassandra_stops_for_30_s_under_load() {
    let state = tempfile::tempdir().unwrap();
    let cassandra = OwnCassandra::new(state.path().join("cassandra"));
    cassandra.script("start");
    let nodes = format!("127.0.0.1:{}", cassandra.cql_port);
    let keyspace = keyspace("outage");

    let mut lake = PreparedLake::new(1_500, 31);
    let log = state.path().join("serve.log");
    let follower = KillOnDrop(
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

    // Load on both GET routes for the whole outage, counting every status.
    let statuses: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let load_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let player = served_player(&nodes, &keyspace).await;
    let load = {
        let (statuses, done, base) = (statuses.clone(), load_done.clone(), api.base.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
            let paths = ["/models/started_sessions/IT/24".to_string(), format!("/models/completed-sessions/{player}")];
            for turn in 0.. {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let status = match client.get(format!("{base}{}", paths[turn % 2])).send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                };
                *statuses.lock().unwrap().entry(status).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Down: new gold versions pile up while the follower waits and retries.
    cassandra.script("stop");
    let down_at = Instant::now();
    lake.add_file(1_500, 32);
    wait_until(Duration::from_secs(20), "the API says it is not ready", || async {
        api.get("/ready", None).await.0 == 503
    })
    .await;
    let (status, body) = api.get("/models/started_sessions/IT/24", None).await;
    assert_eq!(status, 503, "data routes say 503 while Cassandra is down: {body}");
    assert_eq!(api.get("/health", None).await.0, 200);
    tokio::time::sleep(DOWN_FOR.saturating_sub(down_at.elapsed())).await;

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
    load_done.store(true, std::sync::atomic::Ordering::SeqCst);
    load.await.unwrap();
    let statuses = statuses.lock().unwrap().clone();

    let session = connect(&nodes).await;
    let served = dump(&session, &keyspace).await;
    let expected = expected_rows(&lake.lake).await;
    let lost =
        expected.started.difference(&served.started).count() + expected.completed.difference(&served.completed).count();
    let errors_5xx: u64 =
        statuses.iter().filter(|(status, _)| **status >= 500 && **status != 503).map(|(_, n)| n).sum();
    report::record(
        "outage",
        json!({
            "what": "Cassandra down 30 s under serve --follow and API load",
            "outages": 1,
            "down_seconds": DOWN_FOR.as_secs(),
            "statuses": statuses,
            "rows_compared": expected.started.len() + expected.completed.len(),
            "lost": lost,
            "errors_5xx": errors_5xx,
            "equal": served == expected,
        }),
    );
    assert_eq!(served, expected);
    assert_eq!(errors_5xx, 0, "only 200 and the documented 503 while down: {statuses:?}");
    assert_eq!(statuses.get(&0), None, "no connection failed: {statuses:?}");
    assert!(statuses.get(&503).is_some_and(|n| *n > 10) && statuses.get(&200).is_some_and(|n| *n > 10), "{statuses:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("Cassandra unavailable"), "the follower says why it waits: {log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// A player with completed sessions in `keyspace`.
async fn served_player(nodes: &str, keyspace: &str) -> String {
    let session = connect(nodes).await;
    let rows: Vec<(String,)> =
        all_rows(&session, format!("SELECT player_id FROM {keyspace}.api_completed_sessions LIMIT 1"), ()).await;
    rows.into_iter().next().expect("a completed session is served").0
}
