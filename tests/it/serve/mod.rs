//! `db` and `serve` against the real Cassandra the README test command
//! starts (SESSIONLAKE_CASSANDRA_NODES, default 127.0.0.1:9042): exact rows
//! against the truth and the gold table, re-runs, and a crash mid-way (the
//! outage of a Cassandra node under load is in the torture suite).
//! Each test works in a keyspace of its own.

/// `sessionlake api` over HTTP.
mod api;
/// `sessionlake run` and `sessionlake up`.
mod run;
/// Files dropped into a watched folder while `up` runs.
mod watch;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use scylla::value::CqlTimestamp;

#[tokio::test(flavor = "multi_thread")]
async fn serve_writes_exactly_what_the_gold_table_and_the_truth_predict() {
    let lake = PreparedLake::new(3_000, 21);
    let nodes = nodes();
    let keyspace = keyspace("exact");
    let session = connect(&nodes).await;

    report(sessionlake(&lake.lake, &["db", "init", "--cassandra-nodes", &nodes, "--keyspace", &keyspace]));
    let first = report(&mut lake.serve(&nodes, &keyspace, &[]));
    let expected = expected_rows(&lake.lake).await;
    assert_eq!(expected.started.len() as u64, lake.truth_sum("served_started_rows"));
    assert_eq!(expected.completed.len() as u64, lake.truth_sum("served_completed_rows"));
    let expired = lake.truth_sum("started_sessions") + lake.truth_sum("completed_sessions")
        - lake.truth_sum("served_started_rows")
        - lake.truth_sum("served_completed_rows");
    assert!(expired > 0, "the generated data has events outside retention");
    assert_eq!(first["started_rows"].as_u64(), Some(expected.started.len() as u64));
    assert_eq!(first["completed_rows"].as_u64(), Some(expected.completed.len() as u64));
    assert_eq!(first["expired_rows"].as_u64(), Some(expired));

    let served = dump(&session, &keyspace).await;
    assert_eq!(served, expected);
    let completed_sessions: HashSet<&String> = served.completed.iter().map(|row| &row.2).collect();
    assert_eq!(completed_sessions.len(), served.completed.len(), "one completed row per session");

    // The API's two queries, straight on the tables: a player's last 20
    // completed sessions, and a country's sessions started in an hour window.
    let mut players: Vec<&String> = served.completed.iter().map(|row| &row.0).collect();
    players.dedup();
    for player in players.iter().step_by(players.len() / 5 + 1) {
        let rows: Vec<(String, CqlTimestamp)> = all_rows(
            &session,
            format!("SELECT session_id, ts FROM {keyspace}.api_completed_sessions WHERE player_id = ? LIMIT 20"),
            (player.as_str(),),
        )
        .await;
        let mut want: Vec<(i64, &String)> =
            expected.completed.iter().filter(|row| &row.0 == *player).map(|row| (row.1, &row.2)).collect();
        want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        want.truncate(20);
        let got: Vec<(i64, &String)> = rows.iter().map(|(session, ts)| (ts.0, session)).collect();
        assert_eq!(got, want, "last 20 completed of {player}");
    }
    // The busiest day of a country, read as the API reads a window: a ts
    // slice of the day partition.
    let busiest = expected.started.iter().map(|row| (&row.0, row.1)).max_by_key(|&(country, day)| {
        (expected.started.iter().filter(|row| &row.0 == country && row.1 == day).count(), country.clone(), day)
    });
    let (country, day) = busiest.unwrap();
    let (from, to) = (day + 6 * 3_600_000, day + 9 * 3_600_000);
    let rows: Vec<(String, CqlTimestamp)> = all_rows(
        &session,
        format!(
            "SELECT session_id, ts FROM {keyspace}.api_start_session_by_day \
             WHERE country = ? AND start_day = ? AND ts >= ? AND ts <= ?"
        ),
        (country.as_str(), CqlTimestamp(day), CqlTimestamp(from), CqlTimestamp(to)),
    )
    .await;
    let got: Vec<(i64, String)> = rows.into_iter().map(|(session, ts)| (ts.0, session)).collect();
    let mut want: Vec<(i64, String)> = expected
        .started
        .iter()
        .filter(|row| &row.0 == country && (from..=to).contains(&row.2))
        .map(|row| (row.2, row.3.clone()))
        .collect();
    want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert!(want.len() >= 2, "a busy window");
    assert_eq!(got, want, "started in {country} from {from} to {to}");

    // Nothing new: nothing written. Re-initialising keeps the rows.
    let again = report(&mut lake.serve(&nodes, &keyspace, &[]));
    assert_eq!((again["ranges"].as_u64(), again["requests"].as_u64()), (Some(0), Some(0)));
    report(sessionlake(&lake.lake, &["db", "init", "--cassandra-nodes", &nodes, "--keyspace", &keyspace]));
    assert_eq!(dump(&session, &keyspace).await, expected);

    // Reset empties the tables and the progress: serving again rebuilds the same rows.
    report(sessionlake(&lake.lake, &["db", "reset", "--cassandra-nodes", &nodes, "--keyspace", &keyspace]));
    assert_eq!(dump(&session, &keyspace).await, ServingRows::default());
    let rebuilt = report(&mut lake.serve(&nodes, &keyspace, &[]));
    assert_eq!(rebuilt["from_version"], serde_json::Value::Null);
    assert_eq!(dump(&session, &keyspace).await, expected);
    drop_keyspace(&session, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_serve_killed_midway_and_rerun_ends_in_the_same_rows() {
    let lake = PreparedLake::new(2_000, 22);
    let nodes = nodes();
    let keyspace = keyspace("crash");
    let session = connect(&nodes).await;
    let small = ["--batch-rows", "2", "--concurrency", "4", "--max-versions-per-range", "1"];

    // A crash after some writes and before the progress is recorded.
    require_crash_points();
    let mut args = small.to_vec();
    args.extend(["--stop-after-requests", "40"]);
    let cut = report(&mut lake.serve(&nodes, &keyspace, &args));
    assert_eq!(cut["interrupted"], true);
    assert_eq!(cut["requests"].as_u64(), Some(40));
    let partial = dump(&session, &keyspace).await;
    assert!(!partial.started.is_empty() || !partial.completed.is_empty(), "some rows were written");

    // A real SIGKILL in the middle of a run.
    let mut child = lake.serve(&nodes, &keyspace, &small).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let finished = report(&mut lake.serve(&nodes, &keyspace, &[]));
    assert_eq!(finished["interrupted"], false);
    let expected = expected_rows(&lake.lake).await;
    assert_eq!(dump(&session, &keyspace).await, expected);
    assert_eq!(expected.completed.len() as u64, lake.truth_sum("served_completed_rows"));
    drop_keyspace(&session, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_settings_are_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let nodes = nodes();
    for (args, needle) in [
        (vec!["db", "init", "--cassandra-nodes", &nodes, "--keyspace", "x; DROP KEYSPACE system"], "keyspace"),
        (vec!["db", "init", "--cassandra-nodes", &nodes, "--replication", "{'class': 'X'}; DROP"], "replication"),
        (vec!["db", "init", "--cassandra-nodes", &nodes, "--cassandra-password", "wrong"], "logging in"),
        (vec!["db", "init", "--cassandra-nodes", "127.0.0.1:1", "--cassandra-wait-seconds", "1"], "127.0.0.1:1"),
    ] {
        let output = sessionlake(&lake, &args).output().unwrap();
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|line| line.starts_with("error: ")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(needle), "{needle}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Serving an empty lake is a no-op, not an error.
    let keyspace = keyspace("empty");
    let empty = report(sessionlake(&lake, &["serve", "--cassandra-nodes", &nodes, "--keyspace", &keyspace]));
    assert_eq!(empty["ranges"].as_u64(), Some(0));
    drop_keyspace(&*connect(&nodes).await, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_moved_earlier_or_an_end_moved_later_leaves_one_row_per_session() {
    let lake = PreparedLake::new(1_000, 23);
    let nodes = nodes();
    let keyspace = keyspace("moved");
    let session = connect(&nodes).await;
    report(&mut lake.serve(&nodes, &keyspace, &[]));

    // Conflicting repeats of served sessions, landed later: each start again
    // ten minutes earlier, each end again an hour later. Gold keeps the
    // earliest start and the latest end, so both serving keys move.
    let batches = sessionlake_lake::query::sql(
        &sessionlake_lake::Lake::new(&lake.lake),
        "SELECT session_id, player_id, country, CAST(start_ts AS BIGINT), CAST(end_ts AS BIGINT) \
         FROM uc_delta_session_events WHERE start_ts IS NOT NULL AND end_ts IS NOT NULL \
         AND start_ts >= TIMESTAMP '2016-11-02T00:00:00' ORDER BY session_id LIMIT 40",
    )
    .await
    .unwrap();
    let moved = sessionlake_lake::query::text_rows(&batches).unwrap();
    assert_eq!(moved.len(), 40);
    let ts = |micros: &Option<String>, shift: i64| {
        sessionlake_model::time::format_ts_micros(micros.as_ref().unwrap().parse::<i64>().unwrap() + shift)
    };
    let mut lines = String::new();
    for row in &moved {
        let [Some(session_id), Some(player), Some(country), start, end] = &row[..] else { panic!("{row:?}") };
        lines.push_str(&format!(
            "{{\"event\":\"start\",\"ts\":\"{}\",\"session_id\":\"{session_id}\",\"player_id\":\"{player}\",\"country\":\"{country}\"}}\n\
             {{\"event\":\"end\",\"ts\":\"{}\",\"session_id\":\"{session_id}\",\"player_id\":\"{player}\"}}\n",
            ts(start, -600_000_000),
            ts(end, 3_600_000_000),
        ));
    }
    let file = lake.dir.path().join("repeats.jsonl.bz2");
    let mut encoder = bzip2::write::BzEncoder::new(std::fs::File::create(&file).unwrap(), bzip2::Compression::fast());
    std::io::Write::write_all(&mut encoder, lines.as_bytes()).unwrap();
    encoder.finish().unwrap();
    let file = file.display().to_string();
    report(sessionlake(&lake.lake, &["ingest", "--source", &file]));
    report(sessionlake(&lake.lake, &["raw"]));
    let folded = report(sessionlake(&lake.lake, &["sessions"]));
    assert_eq!((folded["inserted"].as_u64(), folded["updated"].as_u64()), (Some(0), Some(40)));

    let served = report(&mut lake.serve(&nodes, &keyspace, &[]));
    assert_eq!(served["stale_rows_deleted"].as_u64(), Some(80), "{served}");
    let rows = dump(&session, &keyspace).await;
    assert_eq!(rows, expected_rows(&lake.lake).await);
    let started: HashSet<&String> = rows.started.iter().map(|row| &row.3).collect();
    let completed: HashSet<&String> = rows.completed.iter().map(|row| &row.2).collect();
    assert_eq!((started.len(), completed.len()), (rows.started.len(), rows.completed.len()), "one row per session");
    drop_keyspace(&session, &keyspace).await;
}

/// A `serve` whose gold history is gone (`maintain --ignore-lagging-readers`
/// compacted gold and cleaned the log past serve's position) must not skip
/// the lost versions: it finds the gap and serves the whole gold table
/// again, ending in exactly the rows gold predicts.
#[tokio::test(flavor = "multi_thread")]
async fn a_serve_whose_history_was_cleaned_serves_the_whole_gold_table_again() {
    let mut lake = PreparedLake::new(800, 31);
    let nodes = nodes();
    let keyspace = keyspace("gap");
    let session = connect(&nodes).await;
    let first = report(&mut lake.serve(&nodes, &keyspace, &[]));
    assert_eq!(first["rebuilt_from_snapshot"], false);

    // Gold moves on while serve lags, then loses the history serve needs.
    lake.add_file(800, 32);
    let maintained = report(&mut sessionlake(
        &lake.lake,
        &[
            "maintain",
            "--ignore-lagging-readers",
            "--retention-hours",
            "0",
            "--log-retention-hours",
            "0",
            "--min-files-to-compact",
            "2",
            "--cassandra-nodes",
            &nodes,
            "--keyspace",
            &keyspace,
        ],
    ));
    let gold = &maintained["tables"]["uc_delta_session_events"];
    assert!(gold["log_entries_removed"].as_u64() > Some(0), "{maintained}");

    let second = report(&mut lake.serve(&nodes, &keyspace, &[]));
    assert_eq!(second["rebuilt_from_snapshot"], true, "{second}");
    let expected = expected_rows(&lake.lake).await;
    assert_eq!(dump(&session, &keyspace).await, expected);
    assert_eq!(expected.completed.len() as u64, lake.truth_sum("served_completed_rows"));
    let third = report(&mut lake.serve(&nodes, &keyspace, &[]));
    assert_eq!((third["ranges"].as_u64(), third["rebuilt_from_snapshot"].as_bool()), (Some(0), Some(false)));
    drop_keyspace(&session, &keyspace).await;
}
