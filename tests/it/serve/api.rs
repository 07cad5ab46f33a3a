//! `sessionlake api` over HTTP, against the real Cassandra and a real lake:
//! exact answers compared with the gold table, paging, bounds, keys, forged
//! tokens, POST /events, and a posted event reaching the GET endpoints
//! through `sessions --follow` and `serve --follow` within 5 seconds.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// The demo clock in epoch milliseconds.
const NOW_MS: i64 = 1_478_476_800_000;

const KEY: &str = "it-key-1";

/// The items of a response as (session_id, ts text).
pub fn items(body: &Value) -> Vec<(String, String)> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["session_id"].as_str().unwrap().to_string(), item["ts"].as_str().unwrap().to_string()))
        .collect()
}

fn ts_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Every page of a query with `page_size`, concatenated.
async fn walk(api: &ApiProcess, path: &str, page_size: usize) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut uri = format!("{path}?page_size={page_size}");
        if let Some(token) = &token {
            uri.push_str(&format!("&page_token={token}"));
        }
        let (status, body) = api.get(&uri, Some(KEY)).await;
        assert_eq!(status, 200, "{uri}: {body}");
        let page = items(&body);
        assert!(page.len() <= page_size);
        all.extend(page);
        match body["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_exactly_what_the_gold_table_holds() {
    let lake = PreparedLake::new(3_000, 41);
    let nodes = nodes();
    let keyspace = keyspace("api");
    report(sessionlake(&lake.lake, &["db", "init", "--cassandra-nodes", &nodes, "--keyspace", &keyspace]));
    report(&mut lake.serve(&nodes, &keyspace, &[]));
    let expected = expected_rows(&lake.lake).await;
    let api = ApiProcess::start(&lake.lake, &nodes, &keyspace, Some(&format!("other-key,{KEY}")));
    api.wait_ready().await;

    // Completed sessions: the last 20 of sampled players, newest first.
    let players: BTreeSet<&String> = expected.completed.iter().map(|row| &row.0).collect();
    assert!(players.len() > 20, "{} players", players.len());
    for player in players.iter().step_by(players.len() / 7) {
        let mut want: Vec<(i64, String)> =
            expected.completed.iter().filter(|row| &row.0 == *player).map(|row| (row.1, row.2.clone())).collect();
        want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        want.truncate(20);
        let want: Vec<(String, String)> = want.into_iter().map(|(ts, session)| (session, ts_text(ts))).collect();
        let path = format!("/models/completed-sessions/{player}");
        let (status, body) = api.get(&path, Some(KEY)).await;
        assert_eq!(status, 200);
        assert_eq!(items(&body), want, "{path}");
        assert_eq!(body["count"], want.len());
        assert_eq!(body["items"][0]["player_id"], player.as_str());
        assert_eq!(walk(&api, &path, 3).await, want, "{path} paged by 3");
    }

    // Started sessions in the last X hours, for the busiest countries.
    let started_in = |country: &str, hours: i64| -> Vec<(String, String)> {
        let mut rows: Vec<(i64, String)> = expected
            .started
            .iter()
            .filter(|row| row.0 == country && (NOW_MS - hours * 3_600_000..=NOW_MS).contains(&row.2))
            .map(|row| (row.2, row.3.clone()))
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        rows.into_iter().map(|(ts, session)| (session, ts_text(ts))).collect()
    };
    let mut countries: Vec<(usize, String)> = expected
        .started
        .iter()
        .map(|row| row.0.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|country| (started_in(&country, 24).len(), country))
        .collect();
    countries.sort_by(|a, b| b.cmp(a));
    assert!(countries[0].0 >= 3, "a busy country in the last 24 hours: {:?}", &countries[..3]);
    for (_, country) in countries.iter().take(3) {
        for hours in [1, 6, 24] {
            let path = format!("/models/started_sessions/{country}/{hours}");
            let (status, body) = api.get(&path, Some(KEY)).await;
            assert_eq!(status, 200);
            assert_eq!(items(&body), started_in(country, hours), "{path}");
        }
        let path = format!("/models/started_sessions/{country}/24");
        for page_size in [1, 2, 5] {
            assert_eq!(walk(&api, &path, page_size).await, started_in(country, 24), "{path} paged by {page_size}");
        }
    }

    // Bounds, forged tokens and keys.
    for hours in ["0", "25", "-1", "abc"] {
        let (status, body) = api.get(&format!("/models/started_sessions/IT/{hours}"), Some(KEY)).await;
        assert_eq!(status, 422, "hours {hours}");
        assert_eq!(body["detail"], "hours must be a whole number between 1 and 24");
    }
    let busiest = &countries[0].1;
    let (_, first) = api.get(&format!("/models/started_sessions/{busiest}/24?page_size=1"), Some(KEY)).await;
    let token = first["next_page_token"].as_str().expect("more than one page").to_string();
    let forged = format!("{}{}", &token[..token.len() - 1], if token.ends_with('A') { 'B' } else { 'A' });
    for uri in [
        format!("/models/started_sessions/{busiest}/24?page_token={forged}"),
        format!("/models/started_sessions/{busiest}/23?page_token={token}"),
        "/models/started_sessions/IT/24?page_token=bm90IGEgdG9rZW4".to_string(),
    ] {
        let (status, body) = api.get(&uri, Some(KEY)).await;
        assert_eq!(status, 400, "{uri}: {body}");
    }
    let player = players.iter().next().unwrap();
    assert_eq!(api.get(&format!("/models/completed-sessions/{player}"), None).await.0, 401);
    assert_eq!(api.get(&format!("/models/completed-sessions/{player}"), Some("wrong")).await.0, 401);
    assert_eq!(api.get("/health", None).await, (200, json!({"detail": "Healthy"})));
    assert_eq!(api.get("/ready", None).await.0, 200);
    assert_eq!(api.get("/openapi.json", None).await.0, 200);

    let log = api.stop();
    assert!(!log.contains(KEY) && !log.contains("other-key"), "keys never reach the log");
    assert!(!log.contains("panicked"), "{log}");
    drop_keyspace(&*connect(&nodes).await, &keyspace).await;
}

pub fn event(kind: &str, session: &str, player: &str, ts: &str) -> Value {
    let mut event = json!({"event": kind, "ts": ts, "session_id": session, "player_id": player});
    if kind == "start" {
        event["country"] = json!("AQ");
    }
    event
}

#[tokio::test(flavor = "multi_thread")]
async fn posted_events_reach_the_get_endpoints_within_5_seconds() {
    let lake = PreparedLake::new(500, 42);
    let nodes = nodes();
    let keyspace = keyspace("post");
    report(sessionlake(&lake.lake, &["db", "init", "--cassandra-nodes", &nodes, "--keyspace", &keyspace]));
    report(&mut lake.serve(&nodes, &keyspace, &[]));
    let raw_rows = || async { raw_row_count(&lake.lake).await };
    let raw_before = raw_rows().await;
    assert_eq!(raw_before, lake.truth_sum("raw_rows"));

    let api = ApiProcess::start(&lake.lake, &nodes, &keyspace, None);
    let followers = [
        background(sessionlake(&lake.lake, &["sessions", "--follow", "--poll-seconds", "0.2"]), "sessions"),
        background(lake.serve(&nodes, &keyspace, &["--follow", "--poll-seconds", "0.2"]), "serve"),
    ];
    api.wait_ready().await;

    // Invalid: 422, naming the event, nothing written.
    let player = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let session = "0b000000-0000-4000-8000-000000000001";
    let bad = json!([
        event("start", session, player, "2016-11-06T23:50:00"),
        event("start", "nope", player, "2016-11-06T23:50:00")
    ]);
    let (status, body) = api.post("/events", &bad).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"],
        json!([{"index": 1, "reason": "invalid_session_id", "message": body["errors"][0]["message"]}])
    );
    assert_eq!(raw_rows().await, raw_before);

    // Valid: 202 once in the write-ahead log; the raw table holds the
    // event after the next fold (about a second).
    // (Cassandra keeps milliseconds: the served ts drops the last digits.)
    let posted_at = Instant::now();
    let start = json!([event("start", session, player, "2016-11-06T23:50:00.000001")]);
    let (status, body) = api.post("/events", &start).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 1);
    assert!(body["wal_sequence"].as_u64().is_some() && body.get("raw_version").is_none(), "{body}");
    wait_until(Duration::from_secs(5), "the raw table holds the event", || async {
        raw_rows().await == raw_before + 1
    })
    .await;
    wait_until(Duration::from_secs(5), "the started session is served", || async {
        let (_, body) = api.get("/models/started_sessions/AQ/1", None).await;
        items(&body).contains(&(session.to_string(), "2016-11-06T23:50:00.000000".to_string()))
    })
    .await;
    let visible_after = posted_at.elapsed();

    // The end, and a retry of the same batch: one more raw row, not two.
    let end = json!([event("end", session, player, "2016-11-06T23:55:00")]);
    assert_eq!(api.post("/events", &end).await.0, 202);
    assert_eq!(api.post("/events", &end).await.0, 202);
    wait_until(Duration::from_secs(5), "the completed session is served", || async {
        let (_, body) = api.get(&format!("/models/completed-sessions/{player}"), None).await;
        items(&body) == vec![(session.to_string(), "2016-11-06T23:55:00.000000".to_string())]
    })
    .await;
    drop(followers);
    let log = api.stop();
    assert_eq!(raw_rows().await, raw_before + 2, "the retry added nothing");
    assert!(log.contains("no API keys configured"), "an open API says so at start-up");
    eprintln!("posted start visible in GET after {visible_after:?}");
    drop_keyspace(&*connect(&nodes).await, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_starts_without_cassandra_and_says_503() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let api = ApiProcess::start(&dir.path().join("lake"), "127.0.0.1:1", "t_nowhere", None);
    assert_eq!(api.get("/health", None).await.0, 200);
    let (status, body) = api.get("/ready", None).await;
    assert_eq!(status, 503);
    assert!(body["detail"].as_str().unwrap().contains("Cassandra"));
    let (status, _) = api.get("/models/started_sessions/IT/3", None).await;
    assert_eq!(status, 503);
    let log = api.stop();
    assert!(log.contains("retrying"), "the API says it retries: {log}");
}

/// A background command, its log on the test's stderr; killed when the
/// test ends.
fn background(mut command: std::process::Command, what: &str) -> KillOnDrop {
    let child = command
        .env("SESSIONLAKE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|error| panic!("{what} starts: {error}"));
    KillOnDrop(child)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_ack_commit_a_202_means_the_raw_table_holds_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut command =
        sessionlake(&lake, &["api", "--addr", "127.0.0.1:0", "--ack", "commit", "--keyspace", "t_ack_commit"]);
    command.env_remove("SESSIONLAKE_API_KEYS").env_remove("SESSIONLAKE_API_KEYS_FILE");
    let api = ApiProcess::spawn(command, "API listening on ", Duration::from_secs(60));
    let (player, session) = ("cccccccccccccccccccccccccccccccc", "0d000000-0000-4000-8000-000000000001");
    let posted = json!([
        event("start", session, player, "2016-11-06T23:40:00"),
        event("end", session, player, "2016-11-06T23:45:00")
    ]);
    let (status, body) = api.post("/events", &posted).await;
    assert_eq!(status, 202, "{body}");
    assert!(body["raw_version"].as_i64().is_some() && body.get("wal_sequence").is_none(), "{body}");
    assert_eq!(raw_row_count(&lake).await, 2, "in the raw table when the 202 arrives");
    let log = api.stop();
    assert!(!lake.join("_wal").exists(), "no write-ahead log with --ack commit: {log}");
}
