//! The serving store as a real 3-node Cassandra cluster, replication factor
//! 3, started by the project's script for this test binary alone (its own
//! state dir and loopback addresses, so the single node of the other tests
//! is not disturbed). Under a steady load on both GET routes of the API, and
//! with `serve --follow` writing new data that flows through the lake:
//!
//! 1. one node is SIGKILLed for 30 s and started again: only 200s;
//! 2. the three nodes are restarted one after another: only 200s;
//! 3. two nodes are killed: the API answers 503 quickly, never hangs, and is
//!    back to 200 by itself when one returns.
//!
//! After each, the rows read at consistency ALL (every replica answers) are
//! exactly what the gold table predicts. Each scenario is one entry of the
//! torture report (`scripts/torture-report`). The scenarios share one cluster
//! and run in order, in one test: they take nodes down, so they cannot run
//! side by side, and a cluster start costs minutes.

/// The cluster, operated through `scripts/cassandra`.
mod nodes;

/// Steady API load that counts every answer by status.
mod load;

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::load::Load;
use crate::cluster::nodes::Cluster;
use crate::report;
use crate::support::*;

/// The keyspace's replication on the cluster.
const REPLICATION: &str = "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}";

/// Requests per second on the two GET routes together.
const RATE: u32 = 500;

/// How long a node stays down in the node-loss scenario (load goes on).
const DOWN_FOR: Duration = Duration::from_secs(30);

/// Sessions per generated file.
const SESSIONS: u64 = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_node_cluster_keeps_the_api_answering_through_node_loss_and_restarts() {
    let state = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(state.path().join("cassandra"), 3);
    let nodes = cluster.contact_points();
    let keyspace = keyspace("cluster");

    let mut lake = PreparedLake::new(SESSIONS, 61);
    let serve_log = state.path().join("serve.log");
    let follower = follow(&lake, &nodes, &keyspace, &serve_log);
    wait_until_served(&lake, &nodes, &keyspace).await;
    let api = ApiProcess::start(&lake.lake, &nodes, &keyspace, None);
    api.wait_ready().await;
    let targets = load::Targets::from_served(&dump(&*connect(&nodes).await, &keyspace).await);

    // 1. Node loss under load.
    let load = Load::start(&api.base, targets.clone(), RATE);
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.kill_node(2);
    let down_at = Instant::now();
    lake = add_file(lake, 62).await;
    tokio::time::sleep(DOWN_FOR.saturating_sub(down_at.elapsed())).await;
    cluster.start_node(2);
    wait_until_served(&lake, &nodes, &keyspace).await;
    let statuses = load.stop().await;
    check(&cluster, &lake, &keyspace, "node loss: one node SIGKILLed for 30 s, then started again", 1, statuses).await;

    // 2. Rolling restart under load, one more file served meanwhile.
    let load = Load::start(&api.base, targets.clone(), RATE);
    for node in 1..=3 {
        cluster.stop_node(node);
        if node == 2 {
            lake = add_file(lake, 63).await;
        }
        cluster.start_node(node);
    }
    wait_until_served(&lake, &nodes, &keyspace).await;
    let statuses = load.stop().await;
    check(&cluster, &lake, &keyspace, "rolling restart: each node stopped and started in turn", 3, statuses).await;

    // 3. Two of three replicas down: QUORUM reads cannot succeed.
    cluster.kill_node(2);
    cluster.kill_node(3);
    let path = targets.started_path();
    let mut slowest = Duration::ZERO;
    let mut unavailable = 0;
    for _ in 0..10 {
        let asked = Instant::now();
        let (status, body) = api.get(&path, None).await;
        slowest = slowest.max(asked.elapsed());
        assert_eq!(status, 503, "two nodes down: {body}");
        unavailable += 1;
    }
    assert!(slowest < Duration::from_secs(5), "a 503 comes within the read timeout, took {slowest:?}");
    let answer = reqwest::get(format!("{}{path}", api.base)).await.unwrap();
    let (status, headers) = (answer.status().as_u16(), answer.headers().clone());
    let body = answer.text().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"), "a 503 says when to retry: {headers:?} {body}");
    cluster.start_node(2);
    let back = Instant::now();
    wait_until(Duration::from_secs(120), "the API answers 200 again by itself", || async {
        api.get(&path, None).await.0 == 200
    })
    .await;
    let back_after = back.elapsed();
    cluster.start_node(3);
    report::record(
        "cluster",
        json!({
            "what": "two of three nodes down: 503 with Retry-After, then 200 by itself",
            "outages": 1,
            "unavailable_answers": unavailable,
            "slowest_503_ms": slowest.as_millis() as u64,
            "back_to_200_ms": back_after.as_millis() as u64,
        }),
    );

    drop(follower);
    let log = std::fs::read_to_string(&serve_log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
    let api_log = api.stop();
    assert!(!api_log.contains("panicked"), "{api_log}");
    drop_keyspace(&*connect(&nodes).await, &keyspace).await;
}

/// Compares every row, read at consistency ALL, with the gold table's
/// prediction; records the scenario; fails on a non-200 or a difference.
async fn check(
    cluster: &Cluster,
    lake: &PreparedLake,
    keyspace: &str,
    what: &str,
    outages: u64,
    statuses: load::Statuses,
) {
    let expected = expected_rows(&lake.lake).await;
    let served = dump(&*cluster.session_at_all().await, keyspace).await;
    let lost =
        expected.started.difference(&served.started).count() + expected.completed.difference(&served.completed).count();
    let extra =
        served.started.difference(&expected.started).count() + served.completed.difference(&expected.completed).count();
    let sent: u64 = statuses.counts.values().sum();
    let non_200: u64 = statuses.counts.iter().filter(|(status, _)| **status != 200).map(|(_, n)| n).sum();
    report::record(
        "cluster",
        json!({
            "what": what,
            "outages": outages,
            "requests": sent,
            "statuses": statuses.counts,
            "non_200": non_200,
            "errors_5xx": non_200,
            "rows_compared": expected.started.len() + expected.completed.len(),
            "lost": lost,
            "extra": extra,
            "equal": served == expected,
        }),
    );
    assert_eq!(non_200, 0, "{what}: only 200s, got {:?}; first others: {:?}", statuses.counts, statuses.samples);
    assert!(sent > 1_000, "{what}: the load ran ({sent} requests)");
    assert_eq!((lost, extra), (0, 0), "{what}: rows at consistency ALL equal the gold table's prediction");
}

/// Lands one more file (generate → ingest → raw → sessions, blocking) off
/// the runtime, so the load keeps its pace.
async fn add_file(mut lake: PreparedLake, seed: u64) -> PreparedLake {
    tokio::task::spawn_blocking(move || {
        lake.add_file(SESSIONS, seed);
        lake
    })
    .await
    .unwrap()
}

/// Waits until the serving tables hold as many rows as the files landed
/// predict (read at QUORUM, as the API reads).
async fn wait_until_served(lake: &PreparedLake, nodes: &str, keyspace: &str) {
    let want = (lake.truth_sum("served_started_rows"), lake.truth_sum("served_completed_rows"));
    let session = connect(nodes).await;
    wait_until(Duration::from_secs(300), "every file landed is served", || async {
        served_counts(&session, keyspace).await == Some(want)
    })
    .await;
}

/// `serve --follow` into the cluster, logging to `log`; killed when dropped.
fn follow(lake: &PreparedLake, nodes: &str, keyspace: &str, log: &std::path::Path) -> KillOnDrop {
    let child = lake
        .serve(nodes, keyspace, &["--follow", "--poll-seconds", "0.2", "--replication", REPLICATION])
        .env("SESSIONLAKE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}
