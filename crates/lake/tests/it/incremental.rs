//! Incremental, exactly-once behaviour: re-runs change nothing, a crash
//! right after a commit does not apply twice, late and out-of-order events
//! complete their sessions instead of duplicating them.

use std::io::Write;

use sessionlake_lake::Lake;
use sessionlake_lake::landing::{Ingest, Source};
use sessionlake_lake::raw::ChunkLimits;
use sessionlake_model::tables;

use crate::util::{count, generated, gold_content, ingest, raw, raw_in_chunks, rows, sessions, version};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_every_stage_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generated(dir.path(), 1_500, 21, 0.05);
    let lake = Lake::new(dir.path().join("lake"));
    ingest(&lake, &file).await;
    raw(&lake, false).await;
    sessions(&lake, None).await;
    let raw_version = version(&lake, tables::RAW_TABLE_DIR).await;
    let rejected_version = version(&lake, tables::REJECTED_TABLE_DIR).await;
    let gold_version = version(&lake, tables::SESSIONS_TABLE_DIR).await;
    let gold_before = gold_content(&lake).await;

    let landed =
        Ingest { lake: lake.clone(), source: Source::File(file.clone()), show_progress: false }.run().await.unwrap();
    assert!(landed.already_landed);
    let again = raw(&lake, false).await;
    assert_eq!((again.files_processed, again.files_skipped, again.inserted, again.rejected), (0, 1, 0, 0));
    let again = sessions(&lake, None).await;
    assert_eq!((again.batches, again.inserted, again.updated), (0, 0, 0));

    assert_eq!(version(&lake, tables::RAW_TABLE_DIR).await, raw_version, "no new raw version");
    assert_eq!(version(&lake, tables::REJECTED_TABLE_DIR).await, rejected_version, "no new rejected version");
    assert_eq!(version(&lake, tables::SESSIONS_TABLE_DIR).await, gold_version, "no new gold version");
    assert_eq!(gold_content(&lake).await, gold_before);
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events").await, truth.raw_rows);
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events_rejected").await, truth.rejected_rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_gold_merge_commit_does_not_double_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generated(dir.path(), 1_500, 33, 0.05);

    let clean = Lake::new(dir.path().join("clean"));
    ingest(&clean, &file).await;
    raw(&clean, false).await;
    sessions(&clean, None).await;

    // Stop right after each MERGE commit — the instant where a stage with
    // separate bookkeeping would lose track — then restart, until done.
    let crashed = Lake::new(dir.path().join("crashed"));
    ingest(&crashed, &file).await;
    // Chunks of 400 lines: several raw versions, so several micro-batches.
    raw_in_chunks(&crashed, ChunkLimits { max_lines: 400, ..ChunkLimits::default() }).await;
    let mut restarts = 0;
    loop {
        let report = sessions(&crashed, Some(1)).await;
        if report.batches == 0 {
            break;
        }
        restarts += 1;
    }
    assert!(restarts >= 2, "the data spans several micro-batches ({restarts})");
    let crashed_content = gold_content(&crashed).await;
    assert_eq!(crashed_content.len() as u64, truth.sessions);
    assert_eq!(crashed_content, gold_content(&clean).await);
    let updated_twice =
        count(&crashed, "SELECT COUNT(*) FROM uc_delta_session_events WHERE session_status = 1 AND end_ts IS NULL")
            .await;
    assert_eq!(updated_twice, 0);
}

fn write_bz2(path: &std::path::Path, lines: &[&str]) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = bzip2::write::BzEncoder::new(file, bzip2::Compression::fast());
    for line in lines {
        writeln!(encoder, "{line}").unwrap();
    }
    encoder.finish().unwrap();
}

const PLAYER: &str = "0a2d12a1a7e145de8bae44c0c6e06629";
const MIDNIGHT: &str = "4a0c43c9-c43a-42ff-ba55-67563dfa35d4";
const LONG: &str = "5b1d54da-d54b-43ff-ba55-67563dfa35d5";
const BACKWARDS: &str = "6c2e65eb-e65c-44ff-ba55-67563dfa35d6";

fn event(kind: &str, ts: &str, session: &str) -> String {
    match kind {
        "start" => {
            format!(r#"{{"event":"start","ts":"{ts}","session_id":"{session}","player_id":"{PLAYER}","country":"FI"}}"#)
        }
        _ => format!(r#"{{"player_id":"{PLAYER}","session_id":"{session}","ts":"{ts}","event":"end"}}"#),
    }
}

async fn session_row(lake: &Lake, session: &str) -> Vec<Vec<String>> {
    rows(
        lake,
        &format!(
            "SELECT country, start_ts, end_ts, session_status, CAST(\"EVENT_DATE\" AS VARCHAR) \
             FROM uc_delta_session_events WHERE session_id = '{session}'"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_before_start_is_completed_later() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));

    // File 1: the ends arrive first (one crossed midnight, one ended five
    // days after its start, one has an end earlier than its start).
    let first = dir.path().join("first.jsonl.bz2");
    write_bz2(
        &first,
        &[
            &event("end", "2016-11-06T00:10:00.000000", MIDNIGHT),
            &event("end", "2016-11-09T08:00:00.000000", BACKWARDS),
            &event("start", "2016-11-01T10:00:00.000000", LONG),
        ],
    );
    ingest(&lake, &first).await;
    raw(&lake, false).await;
    sessions(&lake, None).await;
    assert_eq!(
        session_row(&lake, MIDNIGHT).await,
        vec![vec!["NULL", "NULL", "2016-11-06T00:10:00Z", "1", "2016-11-06"]]
    );

    // File 2: the starts (and the long session's end) arrive later.
    let second = dir.path().join("second.jsonl.bz2");
    write_bz2(
        &second,
        &[
            &event("start", "2016-11-05T23:50:00.000000", MIDNIGHT),
            &event("start", "2016-11-09T09:00:00.000000", BACKWARDS),
            &event("end", "2016-11-06T10:00:00.000000", LONG),
        ],
    );
    ingest(&lake, &second).await;
    raw(&lake, false).await;
    sessions(&lake, None).await;

    assert_eq!(
        session_row(&lake, MIDNIGHT).await,
        vec![vec!["FI", "2016-11-05T23:50:00Z", "2016-11-06T00:10:00Z", "1", "2016-11-05"]],
        "the start fills in without clobbering the end, and the row moves to the start's date"
    );
    assert_eq!(
        session_row(&lake, LONG).await,
        vec![vec!["FI", "2016-11-01T10:00:00Z", "2016-11-06T10:00:00Z", "1", "2016-11-01"]],
        "an end five days later finds its start's partition"
    );
    assert_eq!(
        session_row(&lake, BACKWARDS).await,
        vec![vec!["FI", "2016-11-09T09:00:00Z", "2016-11-09T08:00:00Z", "1", "2016-11-09"]],
        "an end earlier than its start still completes the session"
    );
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM uc_delta_session_events").await, 3);
}
