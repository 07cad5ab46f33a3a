//! Files that arrive while `up` runs: landed from a watched folder
//! (complete files only), refined by the raw follower, folded and served
//! within seconds, each exactly once.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Generates a file of `sessions` sessions with anomalies; returns its
/// bytes and its truth.
fn generated(dir: &Path, sessions: u64, seed: u64) -> (Vec<u8>, Value) {
    let (file, truth) = generate(dir, sessions, seed);
    (std::fs::read(file).unwrap(), truth)
}

fn manifest_entries(lake: &Path) -> usize {
    let folder = lake.join("landingzone/assignment_data/_manifest");
    std::fs::read_dir(folder).map_or(0, |entries| {
        entries.filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|ext| ext == "json")).count()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn files_dropped_while_up_runs_reach_raw_gold_and_cassandra_once() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, inbox) = (dir.path().join("lake"), dir.path().join("inbox"));
    std::fs::create_dir_all(&inbox).unwrap();
    let (nodes, keyspace) = (nodes(), keyspace("watch"));
    let files: Vec<(Vec<u8>, Value)> = [(400, 61), (300, 62), (300, 63)]
        .into_iter()
        .map(|(sessions, seed)| generated(dir.path(), sessions, seed))
        .collect();
    let first = dir.path().join("first.jsonl.bz2");
    std::fs::write(&first, &files[0].0).unwrap();
    let (first_arg, inbox_arg) = (first.display().to_string(), inbox.display().to_string());
    let mut command = sessionlake(
        &lake,
        &[
            "up",
            "--source",
            &first_arg,
            "--watch",
            &inbox_arg,
            "--settle-seconds",
            "1",
            "--watch-poll-seconds",
            "0.2",
            "--poll-seconds",
            "0.2",
            "--cassandra-nodes",
            &nodes,
            "--keyspace",
            &keyspace,
            "--addr",
            "127.0.0.1:0",
        ],
    );
    command.env_remove("SESSIONLAKE_API_KEYS").env_remove("SESSIONLAKE_API_KEYS_FILE");
    let up = ApiProcess::spawn(command, "API ready on ", Duration::from_secs(300));
    assert_eq!(manifest_entries(&lake), 1);

    // The second file is written under a temporary name, left there (for
    // longer than the settle time), then renamed into place.
    let dropped = Instant::now();
    let part = inbox.join("second.jsonl.bz2.part");
    let (half, rest) = files[1].0.split_at(files[1].0.len() / 2);
    std::fs::write(&part, half).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(manifest_entries(&lake), 1, "a file under a temporary name is never landed");
    std::fs::OpenOptions::new().append(true).open(&part).unwrap().write_all(rest).unwrap();
    std::fs::rename(&part, inbox.join("second.jsonl.bz2")).unwrap();

    // The third is written under its final name, a slice every 300 ms
    // (faster than the settle time): never landed half-written.
    let third = inbox.join("third.jsonl.bz2");
    let mut writer = std::fs::File::create(&third).unwrap();
    for slice in files[2].0.chunks(files[2].0.len() / 8 + 1) {
        writer.write_all(slice).unwrap();
        writer.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(writer);

    let sum = |field: &str| files.iter().map(|(_, truth)| truth[field].as_u64().unwrap()).sum::<u64>();
    wait_until(Duration::from_secs(60), "the dropped files are in the raw table", || async {
        raw_row_count(&lake).await == sum("raw_rows")
    })
    .await;
    let session = connect(&nodes).await;
    let (started, completed) = (sum("served_started_rows"), sum("served_completed_rows"));
    wait_until(Duration::from_secs(60), "the dropped files' sessions are served", || async {
        served_counts(&session, &keyspace).await == Some((started, completed))
    })
    .await;
    eprintln!("dropped files served {:.1} s after the first byte was written", dropped.elapsed().as_secs_f64());

    let log = up.stop();
    assert_eq!(manifest_entries(&lake), 3, "each file landed once: {log}");
    assert!(!log.contains("panicked"), "{log}");
    // A half file would have been quarantined (a `corrupt_file` row) or
    // its cut line rejected.
    let rejected = sessionlake_lake::query::sql(
        &sessionlake_lake::Lake::new(&lake),
        "SELECT COUNT(*) FROM r_session_events_rejected",
    )
    .await
    .unwrap();
    let rejected: u64 =
        sessionlake_lake::query::text_rows(&rejected).unwrap()[0][0].as_deref().unwrap().parse().unwrap();
    assert_eq!(rejected, sum("rejected_rows"), "no half file was taken");
    assert_eq!(dump(&session, &keyspace).await, expected_rows(&lake).await, "Cassandra holds what gold predicts");
    drop_keyspace(&session, &keyspace).await;
}
