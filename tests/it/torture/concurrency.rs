//! Two writers at once on one lake: two `raw` runs on the same landing
//! zone; `sessions --follow` while the API group-commits posted events into
//! the raw table it reads; two API processes posting (overlapping batches)
//! into one lake, compacting often. Delta's optimistic concurrency must
//! resolve every race: no commit lost, no row doubled, conflicts retried.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sessionlake_lake::query;

use crate::report;
use crate::support::*;
use crate::torture::dataset::dataset;
use crate::torture::lakes::TestLake;
use crate::torture::snapshot::lake_rows;

/// Gold rows that disagree with the raw table (a session missing on either
/// side, or another first start or last end): 0 when consistent.
const GOLD_VS_RAW: &str = "WITH r AS (SELECT session_id, \
       MIN(CASE WHEN event = 'start' THEN ts END) AS s, MAX(CASE WHEN event = 'end' THEN ts END) AS e \
     FROM r_session_events GROUP BY session_id) \
   SELECT COUNT(*) FROM r FULL OUTER JOIN uc_delta_session_events g ON r.session_id = g.session_id \
   WHERE r.session_id IS NULL OR g.session_id IS NULL \
      OR (r.s IS DISTINCT FROM g.start_ts) OR (r.e IS DISTINCT FROM g.end_ts)";

async fn count(lake: impl Into<TestLake>, statement: &str) -> u64 {
    let batches =
        query::sql(&lake.into().lake(), statement).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
    query::text_rows(&batches).unwrap()[0][0].as_deref().unwrap().parse().unwrap()
}

/// Commit conflicts retried: the line `raw::back_off_after_conflict` logs
/// for each retry.
fn conflicts(log: &str) -> usize {
    log.lines().filter(|line| line.contains("lost a commit race")).count()
}

/// Waits for `runs` (started at once, logging raw and sessions MERGEs at
/// info level), asserts each succeeded without a panic, and that they
/// raced: a test of two writers proves nothing if they ran one after the
/// other. They raced when their MERGE activity (first to last "merged …
/// micro-batch" or lost-race line; RFC 3339 stamps sort like instants)
/// overlapped in time, or when one lost a commit race. Returns their logs.
fn wait_for_racing(runs: Vec<Child>, what: &str) -> String {
    let mut logs = String::new();
    let mut spans = Vec::new();
    for run in runs {
        let output = run.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{what}: every run succeeds: {log}");
        assert!(!log.contains("panicked"), "{log}");
        let stamps: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(" micro-batch") || line.contains("lost a commit race"))
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        spans.push(stamps.first().zip(stamps.last()).map(|(first, last)| (first.to_string(), last.to_string())));
        logs.push_str(&log);
    }
    let overlapped = match (&spans[0], &spans[1]) {
        (Some(a), Some(b)) => a.0 <= b.1 && b.0 <= a.1,
        _ => false,
    };
    assert!(
        overlapped || conflicts(&logs) > 0,
        "{what}: the runs did not write at once ({spans:?}); the test proved nothing"
    );
    logs
}

#[tokio::test(flavor = "multi_thread")]
async fn two_raw_runs_on_the_same_landing_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let files = dataset(dir.path(), 11);
    let land = |lake: &Path| {
        for file in &files {
            report(sessionlake(lake, &["ingest", "--source", &file.display().to_string()]));
        }
    };
    let reference = dir.path().join("reference");
    land(&reference);
    report(sessionlake(&reference, &["raw"]));
    report(sessionlake(&reference, &["sessions"]));
    let expected = lake_rows(&reference).await;

    for round in 0..2 {
        let lake = dir.path().join(format!("round-{round}"));
        land(&lake);
        let spawn = || {
            sessionlake(&lake, &["raw"])
                .env("SESSIONLAKE_LOG", "warn,sessionlake_lake::raw=info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let logs = wait_for_racing(vec![spawn(), spawn()], &format!("two raw runs, round {round}"));
        report(sessionlake(&lake, &["sessions"]));
        let got = lake_rows(&lake).await;
        report::record(
            "concurrency",
            json!({
                "what": "two raw runs on one landing zone",
                "conflicts_logged": conflicts(&logs),
                "rows_compared": expected.iter().map(Vec::len).sum::<usize>(),
                "duplicates": got[0].len().saturating_sub(expected[0].len()) + got[1].len().saturating_sub(expected[1].len()),
                "equal": got == expected,
            }),
        );
        assert!(got == expected, "round {round}: two raw runs at once differ from one (conflicts: {logs})");
    }
}

/// `n` distinct sessions (a start and an end each, the end 5 minutes
/// later), as events in the file format, ids derived from `tag`.
fn posted_sessions(tag: u32, n: u32) -> Vec<Value> {
    (0..n)
        .flat_map(|i| {
            let session = format!("{tag:08x}-0000-4000-8000-{i:012x}");
            let player = format!("{:032x}", u128::from(tag) << 64 | u128::from(i % 97));
            let at = |minute: u32| format!("2016-11-0{}T{:02}:{:02}:00", 2 + i % 3, minute / 60, minute % 60);
            let (start, end) = (at(i % 600), at(i % 600 + 5));
            [
                json!({"event": "start", "ts": start, "session_id": session, "player_id": player, "country": "ZZ"}),
                json!({"event": "end", "ts": end, "session_id": session, "player_id": player}),
            ]
        })
        .collect()
}

/// Posts `batches` to the APIs at `bases` (batch i to `targets(i)`), 16 at
/// a time, retrying a 503 up to 4 times; returns every final status (and
/// prints the body of any answer but 202).
async fn post_all(batches: &[Value], bases: &[String], targets: impl Fn(usize) -> Vec<usize>) -> Vec<u16> {
    let client = Arc::new(reqwest::Client::new());
    let requests: Vec<(String, String)> = batches
        .iter()
        .enumerate()
        .flat_map(|(index, batch)| targets(index).into_iter().map(move |target| (target, batch.to_string())))
        .map(|(target, body)| (format!("{}/events", bases[target]), body))
        .collect();
    futures::stream::iter(requests)
        .map(|(url, body)| {
            let client = client.clone();
            async move {
                // A 503 says "retry" (the API's contract: retrying a batch is
                // harmless); a client on a machine this loaded does, a few times.
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    let status = response.status().as_u16();
                    if status == 202 {
                        return status;
                    }
                    eprintln!(
                        "POST /events (attempt {attempts}): {status} {}",
                        response.text().await.unwrap_or_default()
                    );
                    if status != 503 || attempts == 5 {
                        return status;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_follows_while_the_api_commits_posted_events() {
    let lake = PreparedLake::new(600, 61);
    let nodes = nodes();
    let keyspace = keyspace("follow_post");
    let api = ApiProcess::start(&lake.lake, &nodes, &keyspace, None);
    let mut follower = sessionlake(&lake.lake, &["sessions", "--follow", "--poll-seconds", "0.1"])
        .env("SESSIONLAKE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = posted_sessions(0x51, 600);
    // A session's start and end in different batches, often far apart.
    let mut batches: Vec<Value> = events.chunks(10).map(|chunk| json!(chunk)).collect();
    batches.rotate_left(7);
    let ends_first: Vec<Value> = batches.split_off(batches.len() / 2);
    let batches: Vec<Value> = ends_first.into_iter().chain(batches).collect();
    let statuses = post_all(&batches, std::slice::from_ref(&api.base), |_| vec![0]).await;
    assert!(statuses.iter().all(|status| *status == 202), "every batch accepted: {statuses:?}");

    let expected_sessions = lake.truth_sum("sessions") + 600;
    wait_until(Duration::from_secs(60), "sessions caught up", || async {
        count(&lake.lake, "SELECT COUNT(*) FROM uc_delta_session_events").await == expected_sessions
    })
    .await;
    follower.kill().unwrap();
    let log = String::from_utf8_lossy(&follower.wait_with_output().unwrap().stderr).into_owned();
    let api_log = api.stop();
    let inconsistent = count(&lake.lake, GOLD_VS_RAW).await;
    let raw_rows = count(&lake.lake, "SELECT COUNT(*) FROM r_session_events").await;
    let distinct = count(&lake.lake, "SELECT COUNT(DISTINCT \"UNIQUE_ID_ROW\") FROM r_session_events").await;
    report::record(
        "concurrency",
        json!({
            "what": "sessions --follow while the API commits posted events",
            "conflicts_logged": conflicts(&log) + conflicts(&api_log),
            "rows_compared": raw_rows + expected_sessions,
            "duplicates": raw_rows - distinct,
            "lost": inconsistent,
            "equal": inconsistent == 0 && raw_rows == distinct,
        }),
    );
    assert_eq!(raw_rows, lake.truth_sum("raw_rows") + 1200, "every posted event once");
    assert_eq!(raw_rows, distinct);
    assert_eq!(inconsistent, 0, "the gold table agrees with the raw table");
    assert!(!log.contains("panicked") && !api_log.contains("panicked"), "{log}{api_log}");
    drop_keyspace(&*connect(&nodes).await, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_api_processes_post_into_one_lake() {
    let dir = tempfile::tempdir().unwrap();
    two_api_processes_post_into(&TestLake::local(&dir.path().join("lake"))).await;
}

/// Two API processes post (overlapping batches) into `lake`: every event
/// once.
pub async fn two_api_processes_post_into(lake: &TestLake) {
    let nodes = nodes();
    let keyspace = keyspace(&format!("two_apis_{}", lake.kind()));
    // Both start on an empty lake at once (both may create the raw table),
    // and compact every 4 commits (overlapping compactions). Each keeps its
    // own write-ahead log; both fold every 0.1 s (racing commits).
    let logs_dir = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        let mut command =
            lake.command(&["api", "--addr", "127.0.0.1:0", "--cassandra-nodes", &nodes, "--keyspace", &keyspace]);
        command
            .env("SESSIONLAKE_API_COMPACT_AFTER_COMMITS", "4")
            .env("SESSIONLAKE_WAL_DIR", logs_dir.path().join(name))
            .env("SESSIONLAKE_WAL_FOLD_SECONDS", "0.1");
        command
    };
    let (first, second) = (start("a"), start("b"));
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| ApiProcess::spawn(first, "API listening on ", Duration::from_secs(60)));
        let b = scope.spawn(|| ApiProcess::spawn(second, "API listening on ", Duration::from_secs(60)));
        (a.join().unwrap(), b.join().unwrap())
    });
    let events = posted_sessions(0xa2, 1_000);
    let batches: Vec<Value> = events.chunks(10).map(|chunk| json!(chunk)).collect();
    // Every batch to one API, every fifth to both (a retry on another replica).
    let statuses = post_all(&batches, &[a.base.clone(), b.base.clone()], |index| match index % 5 {
        0 => vec![0, 1],
        odd if odd % 2 == 1 => vec![0],
        _ => vec![1],
    })
    .await;
    let logs = format!("{}{}", a.stop(), b.stop());
    let warnings: Vec<&str> = logs.lines().filter(|line| line.contains("WARN") || line.contains("ERROR")).collect();
    assert!(statuses.iter().all(|status| *status == 202), "every batch accepted: {statuses:?}\n{warnings:#?}");

    let batches = query::sql(&lake.lake(), "SELECT \"UNIQUE_ID_ROW\" FROM r_session_events").await.unwrap();
    let rows: Vec<String> =
        query::text_rows(&batches).unwrap().into_iter().map(|row| row[0].clone().unwrap()).collect();
    let distinct: BTreeSet<&String> = rows.iter().collect();
    let expected: BTreeSet<String> = events
        .iter()
        .map(|event| sessionlake_model::parse_line(event.to_string().as_bytes()).unwrap().unique_id_row())
        .collect();
    let lost = expected.iter().filter(|id| !distinct.contains(id)).count();
    report::record(
        "concurrency",
        json!({
            "what": format!("two API processes posting into one {} lake, compacting every 4 commits", lake.kind()),
            "conflicts_logged": conflicts(&logs),
            "rows_compared": expected.len(),
            "duplicates": rows.len() - distinct.len(),
            "lost": lost,
            "equal": rows.len() == distinct.len() && lost == 0 && distinct.len() == expected.len(),
        }),
    );
    assert_eq!(rows.len() - distinct.len(), 0, "no event twice");
    assert_eq!(lost, 0, "no event lost");
    assert_eq!(distinct.len(), expected.len(), "nothing else");
    assert!(!logs.contains("panicked"), "{logs}");
    drop_keyspace(&*connect(&nodes).await, &keyspace).await;
}

/// `sessionlake run --source FILE` into `lake` and `keyspace`.
pub fn run_command(lake: impl Into<TestLake>, file: &Path, nodes: &str, keyspace: &str) -> std::process::Command {
    let file = file.display().to_string();
    let mut command =
        lake.into().command(&["run", "--source", &file, "--cassandra-nodes", nodes, "--keyspace", keyspace]);
    command.env("SESSIONLAKE_LOG", "warn,sessionlake_lake::raw=info,sessionlake_lake::sessions=info");
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_on_one_lake_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let files = dataset(dir.path(), 13);
    let nodes = nodes();
    let session = connect(&nodes).await;

    let reference = dir.path().join("reference");
    let reference_keyspace = keyspace("two_runs_reference");
    for file in &files {
        report(run_command(&reference, file, &nodes, &reference_keyspace));
    }
    let expected = lake_rows(&reference).await;
    let expected_served = dump(&session, &reference_keyspace).await;
    assert_eq!(expected_served, expected_rows(&reference).await);

    // Each process lands one file and refines everything it finds: the two
    // raw stages, the two sessions stages and the two serve stages race.
    let lake = dir.path().join("lake");
    let keyspace = keyspace("two_runs");
    report(sessionlake(&lake, &["db", "init", "--cassandra-nodes", &nodes, "--keyspace", &keyspace]));
    let runs: Vec<Child> = files
        .iter()
        .map(|file| {
            run_command(&lake, file, &nodes, &keyspace).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let logs = wait_for_racing(runs, "two runs");
    // A run that finished first may not have seen the other's file: one more
    // pass of each stage catches up, as the next `run` or a follower would.
    report(sessionlake(&lake, &["sessions"]));
    report(sessionlake(&lake, &["serve", "--cassandra-nodes", &nodes, "--keyspace", &keyspace]));

    let got = lake_rows(&lake).await;
    let served = dump(&session, &keyspace).await;
    report::record(
        "concurrency",
        json!({
            "what": "two `run`s on one lake at once",
            "conflicts_logged": conflicts(&logs),
            "rows_compared": expected.iter().map(Vec::len).sum::<usize>() + expected_served.started.len() + expected_served.completed.len(),
            "duplicates": got[0].len().saturating_sub(expected[0].len()) + got[2].len().saturating_sub(expected[2].len()),
            "equal": got[0] == expected[0] && got[2] == expected[2] && served == expected_served,
        }),
    );
    assert!(got[0] == expected[0], "raw rows equal those of one run after the other");
    assert!(got[2] == expected[2], "gold rows equal those of one run after the other");
    assert_eq!(served, expected_served, "the serving tables too");
    drop_keyspace(&session, &keyspace).await;
    drop_keyspace(&session, &reference_keyspace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_while_up_follows() {
    let dir = tempfile::tempdir().unwrap();
    run_while_up_follows_on(&TestLake::local(&dir.path().join("lake")), dir.path()).await;
}

/// `up` follows `lake` while a `run` lands and refines a second file into
/// it: the tables end as two runs one after the other leave them (a local
/// reference in `dir`).
pub async fn run_while_up_follows_on(lake: &TestLake, dir: &Path) {
    let files = dataset(dir, 17);
    let nodes = nodes();
    let session = connect(&nodes).await;
    let reference_keyspace = keyspace(&format!("run_up_reference_{}", lake.kind()));
    let keyspace = keyspace(&format!("run_up_{}", lake.kind()));
    let first = files[0].display().to_string();
    let mut command = lake.command(&[
        "up",
        "--source",
        &first,
        "--cassandra-nodes",
        &nodes,
        "--keyspace",
        &keyspace,
        "--addr",
        "127.0.0.1:0",
        "--poll-seconds",
        "0.1",
    ]);
    command.env_remove("SESSIONLAKE_API_KEYS").env_remove("SESSIONLAKE_API_KEYS_FILE");
    let up = ApiProcess::spawn(command, "API ready on ", Duration::from_secs(300));

    // A `run` beside the followers: its sessions and serve stages race
    // theirs on the same tables.
    let output = run_command(lake, &files[1], &nodes, &keyspace).output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "run beside up succeeds: {log}");

    let reference = dir.join("reference");
    for file in &files {
        report(run_command(&reference, file, &nodes, &reference_keyspace));
    }
    let expected = lake_rows(&reference).await;
    let expected_served = dump(&session, &reference_keyspace).await;
    wait_until(Duration::from_secs(60), "up's followers catch up", || async {
        lake_rows(lake).await[2] == expected[2] && dump(&session, &keyspace).await == expected_served
    })
    .await;
    assert!(lake_rows(lake).await[0] == expected[0], "raw rows equal");
    let up_log = up.stop();
    // The followers may lose commit races to the run (retried inside a
    // pass), but no pass fails.
    let failed_passes = up_log.lines().filter(|line| line.contains("a follow pass failed")).count();
    assert!(!up_log.contains("panicked") && failed_passes == 0, "{up_log}");
    report::record(
        "concurrency",
        json!({
            "what": format!("`run` while `up` follows, {} lake", lake.kind()),
            "conflicts_logged": conflicts(&log) + conflicts(&up_log),
            "rows_compared": expected[0].len() + expected[2].len(),
            "duplicates": 0,
            "equal": true,
        }),
    );
    drop_keyspace(&session, &keyspace).await;
    drop_keyspace(&session, &reference_keyspace).await;
}
