//! `sessionlake run` twice on a generated file (the second run adds
//! nothing), and `sessionlake up`: the pipeline, then the API with
//! followers, the announced curl examples answering with data, a posted
//! event served, and a clean stop on SIGTERM.

use std::time::Duration;

use serde_json::{Value, json};

use super::api::{event, items};
use crate::support::*;

fn run_command(lake: &std::path::Path, file: &str, nodes: &str, keyspace: &str) -> std::process::Command {
    sessionlake(
        lake,
        &[
            "run",
            "--generate",
            "--generate-out",
            file,
            "--generate-sessions",
            "1500",
            "--cassandra-nodes",
            nodes,
            "--keyspace",
            keyspace,
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn run_does_everything_once_and_a_second_run_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("events.jsonl.bz2").display().to_string();
    let nodes = nodes();
    let keyspace = keyspace("run");

    let first = report(run_command(&lake, &file, &nodes, &keyspace));
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("events.truth.json")).unwrap()).unwrap();
    assert_eq!(first["landing"]["already_landed"], false);
    assert!(first["landing"]["generate_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(first["raw"]["inserted"], truth["raw_rows"]);
    assert_eq!(first["raw"]["rejected"], truth["rejected_rows"]);
    assert_eq!(first["raw"]["duplicates"], truth["duplicate_lines"]);
    assert_eq!(first["sessions"]["inserted"], truth["sessions"]);
    assert_eq!(first["serve"]["started_rows"], truth["served_started_rows"]);
    assert_eq!(first["serve"]["completed_rows"], truth["served_completed_rows"]);
    assert_eq!(
        first["tables"],
        json!({
            "r_session_events": truth["raw_rows"],
            "r_session_events_rejected": truth["rejected_rows"],
            "uc_delta_session_events": truth["sessions"],
        })
    );
    assert_eq!(first["rejected_by_reason"], truth["rejected_by_reason"]);
    assert!(truth["rejected_rows"].as_u64().unwrap() > 0, "the generated file has bad lines");
    let session = connect(&nodes).await;
    let served = dump(&session, &keyspace).await;
    assert_eq!(served, expected_rows(&lake).await);

    let second = report(run_command(&lake, &file, &nodes, &keyspace));
    assert_eq!(second["landing"]["already_landed"], true);
    assert_eq!(second["landing"]["generate_seconds"], 0.0, "the generated file is reused");
    assert_eq!(second["landing"]["files"], 1);
    assert_eq!((second["raw"]["inserted"].as_u64(), second["raw"]["files_skipped"].as_u64()), (Some(0), Some(1)));
    assert_eq!(second["raw"]["rejected"], 0);
    assert_eq!((second["sessions"]["batches"].as_u64(), second["sessions"]["inserted"].as_u64()), (Some(0), Some(0)));
    assert_eq!(second["sessions"]["updated"], 0);
    assert_eq!((second["serve"]["ranges"].as_u64(), second["serve"]["requests"].as_u64()), (Some(0), Some(0)));
    assert_eq!(second["tables"], first["tables"]);
    assert_eq!(second["rejected_by_reason"], first["rejected_by_reason"]);
    assert_eq!(dump(&session, &keyspace).await, served);
    eprintln!("first run {:.2} s, second run {:.2} s", first["seconds"], second["seconds"]);
    drop_keyspace(&session, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn up_runs_the_pipeline_then_serves_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("events.jsonl.bz2").display().to_string();
    let nodes = nodes();
    let keyspace = keyspace("up");
    let mut command = sessionlake(
        &lake,
        &[
            "up",
            "--generate",
            "--generate-out",
            &file,
            "--generate-sessions",
            "800",
            "--cassandra-nodes",
            &nodes,
            "--keyspace",
            &keyspace,
            "--addr",
            "127.0.0.1:0",
            "--poll-seconds",
            "0.2",
        ],
    );
    command.env_remove("SESSIONLAKE_API_KEYS").env_remove("SESSIONLAKE_API_KEYS_FILE");
    let api = ApiProcess::spawn(command, "API ready on ", Duration::from_secs(300));
    // Ready at once: the reads were prepared before the announcement.
    assert_eq!(api.get("/ready", None).await.0, 200);

    // The two announced curl commands answer with data.
    let log = api.log();
    let examples: Vec<&str> =
        log.lines().filter_map(|line| line.trim().strip_prefix("curl -s ")).map(|url| url.trim()).collect();
    assert_eq!(examples.len(), 2, "two curl examples: {log}");
    for url in examples {
        let path = url.strip_prefix(&api.base).expect("the example is on the API's address");
        let (status, body) = api.get(path, None).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert!(body["count"].as_u64().unwrap() > 0, "{url} returns data: {body}");
    }

    // The followers run: a posted session is served.
    let player = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let session = "0c000000-0000-4000-8000-000000000001";
    let posted = json!([
        event("start", session, player, "2016-11-06T23:40:00"),
        event("end", session, player, "2016-11-06T23:45:00")
    ]);
    assert_eq!(api.post("/events", &posted).await.0, 202);
    wait_until(Duration::from_secs(10), "the posted session is served", || async {
        let (_, body) = api.get(&format!("/models/completed-sessions/{player}"), None).await;
        items(&body) == vec![(session.to_string(), "2016-11-06T23:45:00.000000".to_string())]
    })
    .await;

    let log = api.stop();
    assert!(!log.contains("panicked"), "{log}");
    drop_keyspace(&*connect(&nodes).await, &keyspace).await;
}
