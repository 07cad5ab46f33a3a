//! The raw stage streams a file in chunks (`--raw-chunk-lines`,
//! `--raw-chunk-mb`): the tables do not depend on the chunk limits, no
//! commit holds more rows than a chunk has lines, and a file costs one
//! commit per chunk, not one per event date. `sessions` sizes its
//! micro-batches by the rows of raw's versions, within its row limit.

use std::path::Path;

use sessionlake_generator::Truth;
use sessionlake_lake::Lake;
use sessionlake_lake::raw::{ChunkLimits, RawReport};
use sessionlake_lake::schema::{RAW, REJECTED, SESSIONS, TableSpec};
use sessionlake_lake::sessions::SessionsStage;

use crate::util::{counts, generated, gold_content, ingest, raw_in_chunks, rows, sessions};

/// Rows added by each commit of a local table (version 0, the creation, left out).
fn rows_per_commit(lake: &Lake, spec: &TableSpec) -> Vec<u64> {
    let log = lake.table_dir(spec).join("_delta_log");
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .expect("a log")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .collect();
    commits.sort();
    commits
        .iter()
        .skip(1)
        .map(|path| {
            std::fs::read_to_string(path)
                .expect("a commit")
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON").get("add").cloned())
                .map(|add| {
                    let stats: serde_json::Value =
                        serde_json::from_str(add["stats"].as_str().expect("stats")).expect("stats JSON");
                    stats["numRecords"].as_u64().expect("numRecords")
                })
                .sum()
        })
        .collect()
}

/// For each data file of the (local) gold table: its complete sessions
/// (start and end known) and its others. A session completed in a later
/// micro-batch rewrites only a file of incomplete ones when the two never
/// share a file.
async fn sessions_per_file(lake: &Lake) -> (Vec<u64>, Vec<u64>) {
    use deltalake::arrow::array::Array;
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let gold = lake.open(&SESSIONS).await.expect("gold opens").expect("gold exists");
    let (mut complete, mut open) = (Vec::new(), Vec::new());
    for uri in gold.get_file_uris().expect("file uris") {
        let path = match url::Url::parse(&uri) {
            Ok(url) => url.to_file_path().expect("a local file"),
            Err(_) => std::path::PathBuf::from(&uri),
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).expect("the file opens"))
            .expect("parquet")
            .build()
            .expect("a reader");
        let (mut done, mut not_done) = (0, 0);
        for batch in reader {
            let batch = batch.expect("rows");
            let (start, end) = (batch.column_by_name("start_ts").unwrap(), batch.column_by_name("end_ts").unwrap());
            for row in 0..batch.num_rows() {
                if start.is_valid(row) && end.is_valid(row) { done += 1 } else { not_done += 1 }
            }
        }
        complete.push(done);
        open.push(not_done);
    }
    (complete, open)
}

/// Raw rows per date and rejected rows per reason: what the truth gives.
async fn assert_equals_truth(lake: &Lake, truth: &Truth, shape: &str) {
    let by_date =
        counts(lake, "SELECT CAST(\"EVENT_DATE\" AS VARCHAR), COUNT(*) FROM r_session_events GROUP BY 1 ORDER BY 1")
            .await;
    assert_eq!(by_date, truth.raw_rows_by_date, "{shape}: raw rows per date");
    let by_reason = counts(lake, "SELECT reason, COUNT(*) FROM r_session_events_rejected GROUP BY 1 ORDER BY 1").await;
    assert_eq!(by_reason, truth.rejected_by_reason, "{shape}: rejected rows per reason");
}

async fn content(lake: &Lake) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let raw = rows(lake, "SELECT \"EVENT_DATE\", \"UNIQUE_ID_ROW\" FROM r_session_events ORDER BY 1, 2").await;
    let rejected =
        rows(lake, "SELECT line_number, reason, encode(raw_bytes, 'hex') FROM r_session_events_rejected ORDER BY 1")
            .await;
    (raw, rejected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_limits_change_no_row_and_no_commit_exceeds_a_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generated(dir.path(), 1_000, 17, 0.03);
    assert!(truth.rejected_rows > 20 && truth.raw_rows_by_date.len() > 5, "a file with junk over many dates");
    let whole = one_lake(dir.path(), "whole", &file, ChunkLimits::default()).await;
    assert_equals_truth(&whole.0, &truth, "one chunk").await;
    assert_eq!(whole.1.chunks_merged, 1);
    assert_eq!(rows_per_commit(&whole.0, &RAW), [truth.raw_rows], "one MERGE commit for every date of the file");
    assert_eq!(rows_per_commit(&whole.0, &REJECTED), [truth.rejected_rows]);
    let expected = content(&whole.0).await;

    let shapes = [
        ("997 lines", ChunkLimits { max_lines: 997, max_bytes: 256 << 20 }),
        ("100 lines or 8 KiB", ChunkLimits { max_lines: 100, max_bytes: 8 << 10 }),
    ];
    for (shape, limits) in shapes {
        let (lake, report) = one_lake(dir.path(), shape, &file, limits).await;
        assert_equals_truth(&lake, &truth, shape).await;
        assert_eq!(content(&lake).await, expected, "{shape}: the same rows as one chunk");
        assert_eq!(report.lines, truth.lines, "{shape}");
        assert_eq!(report.inserted, truth.raw_rows, "{shape}");
        assert_eq!(report.rejected, truth.rejected_rows, "{shape}");
        for spec in [&RAW, &REJECTED] {
            let commits = rows_per_commit(&lake, spec);
            let largest = commits.iter().copied().max().unwrap_or(0);
            assert!(largest <= limits.max_lines, "{shape}: a commit to {} added {largest} rows", spec.name);
            assert_eq!(
                commits.iter().sum::<u64>(),
                if spec.name == RAW.name { truth.raw_rows } else { truth.rejected_rows }
            );
        }
        if limits.max_lines == 997 {
            // One commit per chunk (every chunk inserts; the last carries the
            // done marker, or, when the lines fill the chunks exactly, an
            // empty last chunk commits it alone).
            assert_eq!(rows_per_commit(&lake, &RAW).len() as u64, truth.lines / 997 + 1, "{shape}");
            assert_eq!(report.chunks_merged, truth.lines.div_ceil(997), "{shape}");
        }
    }
}

async fn one_lake(dir: &Path, name: &str, file: &Path, limits: ChunkLimits) -> (Lake, RawReport) {
    let lake = Lake::new(dir.join(name.replace(' ', "-")));
    ingest(&lake, file).await;
    let report = raw_in_chunks(&lake, limits).await;
    (lake, report)
}

/// The micro-batches `sessions` should make of raw versions holding
/// `rows` rows each (versions 1, 2, …): consecutive versions while their
/// rows stay within `max_rows` (a larger version alone), at most
/// `max_versions`; only batches with rows merge.
fn expected_micro_batches(rows: &[u64], max_rows: u64, max_versions: usize) -> u64 {
    let mut batches = 0;
    let mut from = 0;
    while from < rows.len() {
        let mut to = from;
        let mut held = rows[from];
        while to + 1 < rows.len() && to + 1 - from < max_versions && held + rows[to + 1] <= max_rows {
            to += 1;
            held += rows[to];
        }
        batches += u64::from(held > 0);
        from = to + 1;
    }
    batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_micro_batches_stay_within_their_row_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generated(dir.path(), 600, 29, 0.02);
    let (lake, _) =
        one_lake(dir.path(), "small chunks", &file, ChunkLimits { max_lines: 100, max_bytes: 1 << 20 }).await;
    let rows = rows_per_commit(&lake, &RAW);
    assert!(rows.len() > 10 && rows.iter().all(|&rows| rows <= 100), "{rows:?}");
    let max_rows = 250;
    let small = SessionsStage {
        lake: lake.clone(),
        max_versions_per_batch: 8,
        max_rows_per_batch: max_rows,
        max_batches: sessionlake_model::crash::StopAfter::NEVER,
        show_progress: false,
    };
    let report = small.run().await.expect("sessions");
    assert_eq!(report.raw_rows, truth.raw_rows);
    assert_eq!(report.batches, expected_micro_batches(&rows, max_rows, 8), "raw rows per version: {rows:?}");
    let gold_commits = rows_per_commit(&lake, &SESSIONS);
    assert_eq!(gold_commits.len() as u64, report.batches, "one gold commit per micro-batch");

    let (complete, open) = sessions_per_file(&lake).await;
    assert!(report.updated > 0 && complete.iter().sum::<u64>() > 0, "sessions completed across micro-batches");
    let mixed: Vec<_> = complete.iter().zip(&open).filter(|(complete, open)| **complete > 0 && **open > 0).collect();
    assert!(mixed.is_empty(), "a gold file mixes complete and incomplete sessions: {mixed:?}");

    // The same raw table folded in large micro-batches gives the same gold.
    let (reference, _) = one_lake(dir.path(), "one chunk", &file, ChunkLimits::default()).await;
    sessions(&reference, None).await;
    assert_eq!(gold_content(&lake).await, gold_content(&reference).await);
}
