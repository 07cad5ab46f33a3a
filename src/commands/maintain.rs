//! `sessionlake maintain`: table upkeep (compaction, vacuum, checkpoints,
//! log cleanup), and the same pass on a schedule inside `up`.
//!
//! The lake reads the raw table's reader (`sessions`) from the gold table
//! itself; serve's position lives in Cassandra, so it is read here and
//! handed over. When it cannot be read, the gold table's history is kept
//! within the retention only, and the report says so.

use std::time::Duration;

use anyhow::{Context, Result};
use sessionlake_lake::Lake;
use sessionlake_lake::maintain::{Maintain, MaintainReport, MaintainSettings, ReaderPosition};
use sessionlake_lake::sessions::SessionFeed;
use sessionlake_serving::serve::ProgressStore;

use crate::config::{CassandraArgs, GlobalArgs, MaintainArgs, MaintainOptions};
use crate::report;

const MAINTAIN_CONTEXT: &str = "while maintaining the lake's tables";

/// `sessionlake maintain`.
pub async fn maintain(global: &GlobalArgs, args: &MaintainArgs) -> Result<()> {
    let report = run_pass(global, &args.options, &args.cassandra, args.dry_run).await?;
    print(global, &report);
    Ok(())
}

/// One maintenance pass as configured.
async fn run_pass(
    global: &GlobalArgs,
    options: &MaintainOptions,
    cassandra: &CassandraArgs,
    dry_run: bool,
) -> Result<MaintainReport> {
    let serve_position = serve_position(&global.lake, cassandra, options.serve_progress_wait_seconds).await;
    let settings = MaintainSettings {
        retention: options.retention_hours,
        log_retention: options.log_retention_hours,
        target_file_size: options.target_file_mb.max(1) << 20,
        min_files_to_compact: options.min_files_to_compact,
        checkpoint: !options.no_checkpoint,
        dry_run,
        protect_readers: !options.ignore_lagging_readers,
        ..MaintainSettings::default()
    };
    Maintain { lake: global.lake.clone(), settings, serve_position }.run().await.context(MAINTAIN_CONTEXT)
}

/// The last gold version `serve` applied, from Cassandra's `serve_progress`.
async fn serve_position(lake: &Lake, cassandra: &CassandraArgs, wait: Duration) -> ReaderPosition {
    let unknown = |why: String| {
        tracing::warn!(%why, "serve's progress is unknown: the gold table's history is kept within the retention only");
        ReaderPosition::Unknown(why)
    };
    let feed = match SessionFeed::open(lake).await {
        Ok(Some(feed)) => feed,
        Ok(None) => return ReaderPosition::Applied(None),
        Err(error) => return unknown(format!("the gold table does not open: {}", crate::one_line(&error.into()))),
    };
    let config = cassandra.config();
    let load = async {
        let session = config.connect_with_retry(Some(wait)).await?;
        let progress = ProgressStore::prepare(session, &config).await?;
        progress.load(feed.table_id()).await
    };
    // The connection waits `wait`; a request in flight gets a little more.
    match tokio::time::timeout(wait + Duration::from_secs(5), load).await {
        Ok(Ok(applied)) => ReaderPosition::Applied(applied),
        Ok(Err(error)) => unknown(format!("serve's progress unreadable: {}", crate::one_line(&error.into()))),
        Err(_) => unknown(format!("Cassandra did not answer within {wait:?}")),
    }
}

/// Runs a maintenance pass every `every_minutes` (0: never) until `stop`;
/// a failed pass is logged and the next one comes at the next tick.
pub(crate) async fn on_schedule(
    global: &GlobalArgs,
    options: &MaintainOptions,
    cassandra: &CassandraArgs,
    every_minutes: u64,
    stop: impl Future<Output = ()>,
) {
    if every_minutes == 0 {
        return;
    }
    let every = Duration::from_secs(every_minutes.saturating_mul(60));
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut stop => return,
        }
        // A pass is not cut short by the stop signal: its commits are
        // atomic, but a vacuum's deletes are best finished.
        match run_pass(global, options, cassandra, false).await {
            Ok(report) => print(global, &report),
            Err(error) => {
                tracing::warn!(error = %crate::one_line(&error), "a maintenance pass failed; the next one is in {every:?}")
            }
        }
    }
}

/// The report: one JSON object with `--json`, else one line per table.
fn print(global: &GlobalArgs, outcome: &MaintainReport) {
    if global.json {
        report::print(global, "maintain", outcome);
        return;
    }
    let title = if outcome.dry_run { "maintain (dry run: nothing changed)" } else { "maintain" };
    println!("{title}");
    let headers = [
        "table",
        "versions",
        "files",
        "compacted",
        "written",
        "removed",
        "bytes freed",
        "kept for reader",
        "change files removed",
        "checkpoint",
        "log removed",
        "reader",
    ];
    let rows: Vec<Vec<String>> = outcome
        .tables
        .iter()
        .map(|(name, table)| {
            let reader = match (&table.reader, table.reader_applied, table.kept_for_reader_from) {
                (None, _, _) => "-".to_string(),
                (Some(reader), applied, Some(from)) => {
                    let applied = applied.map_or("none".to_string(), |version| version.to_string());
                    format!("{reader} at {applied}: kept from {from}")
                }
                (Some(reader), _, None) => format!("{reader}: not kept"),
            };
            vec![
                name.to_string(),
                format!("{}..{}", table.version_before, table.version_after),
                format!("{}->{}", table.files_before, table.files_after),
                report::thousands(table.files_compacted),
                report::thousands(table.files_written),
                report::thousands(table.files_removed),
                report::thousands(table.bytes_freed),
                report::thousands(table.files_kept_for_reader),
                report::thousands(table.change_files_removed),
                table.checkpoint_version.map_or("-".to_string(), |version| version.to_string()),
                report::thousands(table.log_entries_removed),
                reader,
            ]
        })
        .collect();
    report::table(&headers, &rows);
    for (name, table) in &outcome.tables {
        if let Some(note) = &table.reader_note {
            println!("note: {name}: {note}");
        }
        if table.compaction.starts_with("skipped") {
            println!("note: {name}: compaction {}", table.compaction);
        }
    }
    println!("seconds  {:.3}", outcome.seconds);
}
