//! The sessions stage's session → partition index: a MERGE is pruned to
//! the partitions the index names, so a session the index forgot would get
//! a second gold row. These runs put stored rows far from the events that
//! find them (weeks apart, a row that moves, another writer's commits, a
//! snapshot whose change feed is gone) and compare gold with a clean run.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sessionlake_lake::Lake;
use sessionlake_lake::raw::ChunkLimits;
use sessionlake_lake::schema::SESSIONS;
use sessionlake_lake::sessions::{INDEX_SNAPSHOT_DIR, SessionIndex, SessionsReport, SessionsStage};

use crate::util::{count, generated, gold_content, ingest, open_table, raw, raw_in_chunks, rows, version};

const PLAYER: &str = "0a2d12a1a7e145de8bae44c0c6e06629";
/// Starts on 2016-11-01; its end comes 24 days later.
const LATE_END: &str = "7d3f76fc-f76d-45ff-ba55-67563dfa35d7";
/// An end on 2016-11-20 arrives first; a start on 2016-11-02 moves the row
/// 18 days back; a later end (2016-12-05) must find it there.
const MOVED: &str = "8e4087fd-087e-46ff-ba55-67563dfa35d8";

fn start(ts: &str, session: &str) -> String {
    format!(r#"{{"event":"start","ts":"{ts}","session_id":"{session}","player_id":"{PLAYER}","country":"FI"}}"#)
}

fn end(ts: &str, session: &str) -> String {
    format!(r#"{{"event":"end","ts":"{ts}","session_id":"{session}","player_id":"{PLAYER}"}}"#)
}

fn write_bz2(path: &Path, lines: &[Vec<u8>]) {
    let mut encoder = bzip2::write::BzEncoder::new(std::fs::File::create(path).unwrap(), bzip2::Compression::fast());
    for line in lines {
        encoder.write_all(line).unwrap();
        encoder.write_all(b"\n").unwrap();
    }
    encoder.finish().unwrap();
}

/// A file's lines as bytes (the generator's junk lines are not all UTF-8).
fn lines_of(path: &Path) -> Vec<Vec<u8>> {
    let mut text = Vec::new();
    bzip2::read::MultiBzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut text).unwrap();
    let mut lines: Vec<Vec<u8>> = text.split(|&byte| byte == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(lines.pop(), Some(Vec::new()), "the file ends with a newline");
    lines
}

/// Three files: a generated background with the first events of the two
/// crafted sessions, then their far-away events, then the last end.
fn files(dir: &Path) -> (Vec<PathBuf>, u64) {
    let (generated_file, truth) = generated(dir, 1_500, 91, 0.05);
    let mut first = lines_of(&generated_file);
    first.push(start("2016-11-01T10:00:00.000000", LATE_END).into_bytes());
    first.push(end("2016-11-20T10:00:00.000000", MOVED).into_bytes());
    let second = vec![
        end("2016-11-25T09:00:00.000000", LATE_END).into_bytes(),
        start("2016-11-02T08:00:00.000000", MOVED).into_bytes(),
    ];
    let third = vec![end("2016-12-05T07:00:00.000000", MOVED).into_bytes()];
    let paths: Vec<PathBuf> = [first, second, third]
        .iter()
        .enumerate()
        .map(|(index, lines)| {
            let path = dir.join(format!("part-{index}.jsonl.bz2"));
            write_bz2(&path, lines);
            path
        })
        .collect();
    (paths, truth.sessions + 2)
}

fn stage(lake: &Lake, max_versions_per_batch: u64) -> SessionsStage {
    SessionsStage {
        lake: lake.clone(),
        max_versions_per_batch,
        max_rows_per_batch: 1_000_000,
        max_batches: sessionlake_model::crash::StopAfter::NEVER,
        show_progress: false,
    }
}

async fn sessions(lake: &Lake) -> SessionsReport {
    stage(lake, 1).run().await.expect("sessions")
}

async fn crafted_rows(lake: &Lake) -> Vec<Vec<String>> {
    rows(
        lake,
        &format!(
            "SELECT session_id, start_ts, end_ts, session_status, CAST(\"EVENT_DATE\" AS VARCHAR) \
             FROM uc_delta_session_events WHERE session_id IN ('{LATE_END}', '{MOVED}') ORDER BY session_id"
        ),
    )
    .await
}

fn expected_crafted_rows() -> Vec<Vec<String>> {
    [
        [LATE_END, "2016-11-01T10:00:00Z", "2016-11-25T09:00:00Z", "1", "2016-11-01"],
        [MOVED, "2016-11-02T08:00:00Z", "2016-12-05T07:00:00Z", "1", "2016-11-02"],
    ]
    .iter()
    .map(|row| row.iter().map(|value| value.to_string()).collect())
    .collect()
}

/// Gold holds one row per session, and the index (its snapshot caught up,
/// as a run opens it) names exactly gold's partition of every session.
async fn assert_one_row_per_session_and_index_exact(lake: &Lake, sessions: u64) {
    assert_eq!(count(lake, "SELECT COUNT(*) FROM uc_delta_session_events").await, sessions);
    assert_eq!(count(lake, "SELECT COUNT(DISTINCT session_id) FROM uc_delta_session_events").await, sessions);
    let gold = open_table(lake, SESSIONS.dir).await.expect("gold");
    let mut index = SessionIndex::load(lake, &gold).await.unwrap().expect("a run saved a snapshot");
    index.catch_up(&gold).await.unwrap();
    let scanned = SessionIndex::scan(&gold).await.unwrap();
    assert_eq!(index.len() as u64, sessions);
    assert_eq!(scanned.len() as u64, sessions);
    let stored =
        rows(lake, "SELECT session_id, CAST(CAST(\"EVENT_DATE\" AS INT) AS VARCHAR) FROM uc_delta_session_events")
            .await;
    for row in stored {
        let date: i32 = row[1].parse().unwrap();
        assert_eq!(index.date_of(&row[0]), Some(date), "{}", row[0]);
        assert_eq!(scanned.date_of(&row[0]), Some(date), "{}", row[0]);
    }
}

/// The clean run: every line in one file, one micro-batch.
async fn clean_gold(dir: &Path, paths: &[PathBuf]) -> Vec<Vec<String>> {
    let lines: Vec<Vec<u8>> = paths.iter().flat_map(|path| lines_of(path)).collect();
    let all = dir.join("all.jsonl.bz2");
    write_bz2(&all, &lines);
    let lake = Lake::new(dir.join("clean"));
    ingest(&lake, &all).await;
    raw(&lake, false).await;
    let report = stage(&lake, 10_000).run().await.unwrap();
    assert_eq!(report.batches, 1);
    gold_content(&lake).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_weeks_after_their_session_was_stored_find_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, sessions_count) = files(dir.path());
    let expected = clean_gold(dir.path(), &paths).await;

    // A run per file: each opens the index from the snapshot the last one
    // saved and catches up from gold's change feed.
    let lake = Lake::new(dir.path().join("runs"));
    for path in &paths {
        ingest(&lake, path).await;
        raw(&lake, false).await;
        sessions(&lake).await;
    }
    assert_eq!(crafted_rows(&lake).await, expected_crafted_rows());
    assert_eq!(gold_content(&lake).await, expected);
    assert_one_row_per_session_and_index_exact(&lake, sessions_count).await;

    // One run, a micro-batch per file: the index reads the run's own
    // commits before each MERGE (the move of MOVED included).
    let lake = Lake::new(dir.path().join("one-run"));
    for path in &paths {
        ingest(&lake, path).await;
    }
    raw(&lake, false).await;
    let report = sessions(&lake).await;
    assert_eq!(report.batches, 3, "{report:?}");
    assert_eq!(crafted_rows(&lake).await, expected_crafted_rows());
    assert_eq!(gold_content(&lake).await, expected);
    assert_one_row_per_session_and_index_exact(&lake, sessions_count).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_change_feed_is_gone_is_replaced_by_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, sessions_count) = files(dir.path());
    let expected = clean_gold(dir.path(), &paths).await;
    let lake = Lake::new(dir.path().join("lake"));
    let snapshots = lake.table_dir(&SESSIONS).join(INDEX_SNAPSHOT_DIR);
    let gold_dir = lake.table_dir(&SESSIONS);

    ingest(&lake, &paths[0]).await;
    raw(&lake, false).await;
    sessions(&lake).await;
    let kept = dir.path().join("kept-snapshot");
    std::fs::create_dir(&kept).unwrap();
    let saved: Vec<PathBuf> = std::fs::read_dir(&snapshots).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(saved.len(), 1);
    std::fs::copy(&saved[0], kept.join(saved[0].file_name().unwrap())).unwrap();

    // The move of MOVED happens after that snapshot; then the snapshot is
    // put back and the change data of the move deleted.
    ingest(&lake, &paths[1]).await;
    raw(&lake, false).await;
    sessions(&lake).await;
    std::fs::remove_dir_all(&snapshots).unwrap();
    std::fs::create_dir(&snapshots).unwrap();
    std::fs::copy(kept.join(saved[0].file_name().unwrap()), snapshots.join(saved[0].file_name().unwrap())).unwrap();
    let change_data = gold_dir.join("_change_data");
    assert!(change_data.is_dir(), "the MERGE wrote change data");
    std::fs::remove_dir_all(&change_data).unwrap();

    ingest(&lake, &paths[2]).await;
    raw(&lake, false).await;
    sessions(&lake).await;
    assert_eq!(crafted_rows(&lake).await, expected_crafted_rows());
    assert_eq!(gold_content(&lake).await, expected);
    assert_one_row_per_session_and_index_exact(&lake, sessions_count).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_runs_at_once_give_the_gold_of_one_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, sessions_count) = files(dir.path());
    let expected = clean_gold(dir.path(), &paths).await;

    let lake = Lake::new(dir.path().join("lake"));
    for path in &paths[..2] {
        ingest(&lake, path).await;
    }
    // Many raw versions; micro-batches of 1 and of 3 versions, so that
    // the runs' ranges differ: one that loses a race retries its range
    // over the other's commit (which its index reads first), or skips
    // what the other already applied.
    raw_in_chunks(&lake, ChunkLimits { max_lines: 300, ..ChunkLimits::default() }).await;
    let run = |lake: Lake, max_versions_per_batch: u64| async move {
        let started = Instant::now();
        let report = stage(&lake, max_versions_per_batch).run().await.expect("sessions");
        (started, Instant::now(), report)
    };
    // The second starts once the first has committed, so both have
    // micro-batches to commit.
    let first = tokio::spawn(run(lake.clone(), 1));
    while version(&lake, SESSIONS.dir).await.unwrap_or(0) < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let second = tokio::spawn(run(lake.clone(), 3));
    let ((first_start, first_end, first), (second_start, second_end, second)) =
        (first.await.unwrap(), second.await.unwrap());
    assert!(first_start < second_end && second_start < first_end, "the two runs overlapped");
    // The first committed before the second started. The second read raw
    // rows and tried to MERGE them while the first committed: it either
    // committed some, or lost each race, caught its index up with the
    // first's commit, retried, and in the end found its versions applied.
    assert!(first.batches > 0, "{first:?}");
    assert!(second.raw_rows > 0 && second.from_version < second.to_version, "{second:?}");
    assert_eq!(first.to_version, second.to_version);

    // A third run after both: it opens a snapshot one of them saved and
    // reads the other's commits from the change feed.
    ingest(&lake, &paths[2]).await;
    raw(&lake, false).await;
    sessions(&lake).await;
    assert_eq!(crafted_rows(&lake).await, expected_crafted_rows());
    assert_eq!(gold_content(&lake).await, expected);
    assert_one_row_per_session_and_index_exact(&lake, sessions_count).await;
}
