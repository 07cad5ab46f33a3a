//! Shared helpers: generated inputs, running stages, reading numbers back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use sessionlake_generator::{GeneratorConfig, Truth, generate_file};
use sessionlake_lake::landing::{Ingest, Source};
use sessionlake_lake::raw::{ChunkLimits, RawReport, RawStage};
use sessionlake_lake::sessions::{SessionsReport, SessionsStage};
use sessionlake_lake::{Lake, query};

/// A generated file and its truth.
pub fn generated(dir: &Path, sessions: u64, seed: u64, anomaly_rate: f64) -> (PathBuf, Truth) {
    let path = dir.join(format!("events-{seed}.jsonl.bz2"));
    let truth = generate_file(&GeneratorConfig { sessions, seed, anomaly_rate }, &path).expect("generate");
    (path, truth)
}

/// Lands a local file.
pub async fn ingest(lake: &Lake, path: &Path) {
    Ingest { lake: lake.clone(), source: Source::File(path.to_path_buf()), show_progress: false }
        .run()
        .await
        .expect("ingest");
}

/// Runs the raw stage.
pub async fn raw(lake: &Lake, debug: bool) -> RawReport {
    RawStage { lake: lake.clone(), debug, chunk_limits: Default::default(), show_progress: false }
        .run()
        .await
        .expect("raw")
}

/// Runs the raw stage with these chunk limits (small ones make many raw
/// versions out of one file).
pub async fn raw_in_chunks(lake: &Lake, chunk_limits: ChunkLimits) -> RawReport {
    RawStage { lake: lake.clone(), debug: false, chunk_limits, show_progress: false }.run().await.expect("raw")
}

/// Runs the sessions stage (optionally stopping after some batches).
pub async fn sessions(lake: &Lake, max_batches: Option<u64>) -> SessionsReport {
    SessionsStage {
        lake: lake.clone(),
        max_versions_per_batch: 8,
        max_rows_per_batch: 400_000,
        max_batches: sessionlake_model::crash::StopAfter::from_option(max_batches),
        show_progress: false,
    }
    .run()
    .await
    .expect("sessions")
}

/// Runs a query and renders each row as a vector of strings (nulls as "NULL").
pub async fn rows(lake: &Lake, sql: &str) -> Vec<Vec<String>> {
    let batches = query::sql(lake, sql).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
    batches.iter().flat_map(render_batch).collect()
}

/// One batch's rows rendered as strings (nulls as "NULL").
pub fn render_batch(batch: &RecordBatch) -> Vec<Vec<String>> {
    let formatters: Vec<_> = batch
        .columns()
        .iter()
        .map(|column| {
            deltalake::arrow::util::display::ArrayFormatter::try_new(column.as_ref(), &Default::default())
                .expect("formatter")
        })
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            formatters
                .iter()
                .zip(batch.columns())
                .map(
                    |(formatter, column)| {
                        if column.is_null(row) { "NULL".to_string() } else { formatter.value(row).to_string() }
                    },
                )
                .collect()
        })
        .collect()
}

/// A single `COUNT(*)`-like number.
pub async fn count(lake: &Lake, sql: &str) -> u64 {
    let batches = query::sql(lake, sql).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
    let batch = batches.iter().find(|batch| batch.num_rows() > 0).expect("one row");
    batch.column(0).as_primitive::<Int64Type>().value(0) as u64
}

/// `key, count` rows as a map.
pub async fn counts(lake: &Lake, sql: &str) -> BTreeMap<String, u64> {
    rows(lake, sql).await.into_iter().map(|row| (row[0].clone(), row[1].parse().expect("a count"))).collect()
}

/// The Delta table in `dir` under the lake root, if there is one.
pub async fn open_table(lake: &Lake, dir: &str) -> Option<deltalake::DeltaTable> {
    use sessionlake_lake::schema::{RAW, REJECTED, SESSIONS};
    let spec = [&RAW, &REJECTED, &SESSIONS].into_iter().find(|spec| spec.dir == dir).expect("a table's folder");
    lake.open(spec).await.expect("the table opens")
}

/// The latest version of the table in `dir`.
pub async fn version(lake: &Lake, dir: &str) -> Option<u64> {
    open_table(lake, dir).await.and_then(|table| table.version())
}

/// The whole gold table without the write-time columns, sorted: what two
/// runs must agree on.
pub async fn gold_content(lake: &Lake) -> Vec<Vec<String>> {
    rows(
        lake,
        "SELECT session_id, player_id, country, start_ts, end_ts, session_status, \"EVENT_DATE\" \
         FROM uc_delta_session_events ORDER BY session_id",
    )
    .await
}
