//! `sessionlake run`: the whole pipeline once — land the source (or a
//! generated file), raw, sessions, serve — under one progress display, then
//! a summary of every zone. Each stage only does what is new, so a re-run
//! with nothing new takes seconds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use sessionlake_lake::Lake;
use sessionlake_lake::landing::{Ingest, Manifest, Source};
use sessionlake_lake::query;
use sessionlake_lake::raw::RawReport;
use sessionlake_lake::sessions::SessionsReport;
use sessionlake_model::crash::StopAfter;
use sessionlake_model::tables::{RAW_TABLE, REJECTED_TABLE, SESSIONS_TABLE, rejected};
use sessionlake_serving::serve::ServeReport;

use super::quarantine::warn_quarantined;
use super::stages::{SERVE_CONTEXT, SESSIONS_CONTEXT, raw_stage, serve_stage, sessions_stage, show_progress};
use crate::config::{DEFAULT_SOURCE, GlobalArgs, RunArgs};
use crate::report;

/// The anomaly rate of `--generate` files: every kind of bad input appears,
/// as in the real file.
const GENERATED_ANOMALY_RATE: f64 = 0.001;
/// The seed of `--generate` files (the same bytes every time).
const GENERATED_SEED: u64 = 42;

/// What a run did, stage by stage, and what the lake holds afterwards.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    /// What was landed (a URL or a file path).
    pub source: String,
    /// The landing stage.
    pub landing: LandingSummary,
    /// The raw stage.
    pub raw: RawReport,
    /// The sessions stage.
    pub sessions: SessionsReport,
    /// The serve stage.
    pub serve: ServeReport,
    /// Rows per lake table after the run.
    pub tables: BTreeMap<&'static str, u64>,
    /// Rows of the rejected table per reason, after the run.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Wall time of the whole run.
    pub seconds: f64,
}

/// What the landing stage did.
#[derive(Debug, Serialize)]
pub struct LandingSummary {
    /// The landed file.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// True when the same bytes had landed before (nothing added).
    pub already_landed: bool,
    /// Files in the landing zone after the run.
    pub files: u64,
    /// Seconds spent generating the source first (`--generate`, first time only).
    pub generate_seconds: f64,
    /// Wall time, generation included.
    pub seconds: f64,
}

/// `sessionlake run`.
pub async fn run(global: &GlobalArgs, args: &RunArgs) -> Result<()> {
    let summary = pipeline(global, args).await?;
    print(global, &summary);
    Ok(())
}

/// Runs every stage once, in order, and sums up.
pub async fn pipeline(global: &GlobalArgs, args: &RunArgs) -> Result<RunSummary> {
    let started = Instant::now();
    let lake = global.lake.clone();
    let bar = crate::progress::stages_bar(5, show_progress(global));

    bar.set_message("landing");
    let landing_started = Instant::now();
    let (source, generate_seconds) = match (&args.source, args.generate) {
        (_, true) => {
            bar.set_message(format!("generating {}", args.generate_out.display()));
            let seconds = generate_once(&args.generate_out, args.generate_sessions)?;
            bar.set_message("landing");
            (args.generate_out.display().to_string(), seconds)
        }
        (Some(source), false) => (source.clone(), 0.0),
        (None, false) => (DEFAULT_SOURCE.to_string(), 0.0),
    };
    let ingest = Ingest { lake: lake.clone(), source: Source::parse(&source), show_progress: show_progress(global) };
    let landed = ingest
        .run_with_idle_timeout(args.download.idle_timeout)
        .await
        .with_context(|| format!("while landing {source}"))?;
    let files = Manifest::of(&lake)?.entries().await?.len() as u64;
    let landing = LandingSummary {
        file: landed.location.clone(),
        size: landed.entry.size,
        already_landed: landed.already_landed,
        files,
        generate_seconds,
        seconds: landing_started.elapsed().as_secs_f64(),
    };
    bar.inc(1);

    bar.set_message("raw: parse, validate, merge per event date");
    let raw = raw_stage(global).run().await.context("while refining landed files into the raw table")?;
    bar.inc(1);

    bar.set_message("sessions: fold new raw versions into the gold table");
    let sessions_stage = sessions_stage(global, &args.batching, show_progress(global), StopAfter::NEVER);
    let sessions = sessions_stage.run().await.context(SESSIONS_CONTEXT)?;
    bar.inc(1);

    bar.set_message("serve: connect to Cassandra, create what is missing, write new gold versions");
    let server = serve_stage(global, &args.cassandra, &args.writes, false, StopAfter::NEVER)
        .connect()
        .await
        .context("while connecting to Cassandra")?;
    let serve = server.run().await.context(SERVE_CONTEXT)?;
    bar.inc(1);

    bar.set_message("summary: counting the tables");
    let (tables, rejected_by_reason) = table_counts(&lake).await?;
    bar.inc(1);
    bar.finish_and_clear();
    let summary = RunSummary {
        source,
        landing,
        raw,
        sessions,
        serve,
        tables,
        rejected_by_reason,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(summary)
}

/// Writes the generated full-size file and its truth unless the file
/// exists; returns the seconds it took (0 when reused).
fn generate_once(out: &Path, sessions: u64) -> Result<f64> {
    if out.exists() {
        return Ok(0.0);
    }
    let started = Instant::now();
    let config =
        sessionlake_generator::GeneratorConfig { sessions, seed: GENERATED_SEED, anomaly_rate: GENERATED_ANOMALY_RATE };
    let truth = sessionlake_generator::generate_file(&config, out)
        .with_context(|| format!("while generating {}", out.display()))?;
    let truth_path = truth_path(out);
    std::fs::write(&truth_path, truth.to_json_pretty())
        .with_context(|| format!("while writing the truth to {}", truth_path.display()))?;
    Ok(started.elapsed().as_secs_f64())
}

/// `events.jsonl.bz2` → `events.truth.json`, next to it.
fn truth_path(out: &Path) -> PathBuf {
    let name = out.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.split('.').next().filter(|stem| !stem.is_empty()).unwrap_or("generated");
    out.with_file_name(format!("{stem}.truth.json"))
}

/// Rows per table, and rejected rows per reason.
async fn table_counts(lake: &Lake) -> Result<(BTreeMap<&'static str, u64>, BTreeMap<String, u64>)> {
    let mut tables = BTreeMap::new();
    for table in [RAW_TABLE, REJECTED_TABLE, SESSIONS_TABLE] {
        let rows = counted(lake, &format!("SELECT '', COUNT(*) FROM {table}")).await?;
        tables.insert(table, rows.values().sum());
    }
    let statement =
        format!("SELECT {reason}, COUNT(*) FROM {REJECTED_TABLE} GROUP BY {reason}", reason = rejected::REASON);
    Ok((tables, counted(lake, &statement).await?))
}

/// Runs a `SELECT key, COUNT(*)` statement into a map.
async fn counted(lake: &Lake, statement: &str) -> Result<BTreeMap<String, u64>> {
    let batches = query::sql(lake, statement).await.with_context(|| format!("while running {statement}"))?;
    let mut counts = BTreeMap::new();
    for row in query::text_rows(&batches)? {
        let key = row.first().cloned().flatten().unwrap_or_default();
        let count = row.get(1).cloned().flatten().and_then(|count| count.parse().ok()).unwrap_or(0);
        counts.insert(key, count);
    }
    Ok(counts)
}

/// Prints the summary: one JSON object with `--json`, else tables; and a
/// warning line on stderr per quarantined file, either way.
pub fn print(global: &GlobalArgs, summary: &RunSummary) {
    warn_quarantined(&summary.raw.quarantined);
    if global.json {
        report::print(global, "run", summary);
        return;
    }
    let count = |table: &str| summary.tables.get(table).copied().unwrap_or(0);
    let raw_added = summary.raw.inserted;
    let served = summary.serve.started_rows + summary.serve.completed_rows;
    let rows = vec![
        row(
            ["landing", "landingzone/assignment_data (files)"],
            u64::from(!summary.landing.already_landed),
            Some(summary.landing.files),
            summary.landing.seconds,
        ),
        row(["raw", RAW_TABLE], raw_added, Some(count(RAW_TABLE)), summary.raw.seconds),
        row(
            ["raw", REJECTED_TABLE],
            summary.raw.rejected + summary.raw.newly_quarantined,
            Some(count(REJECTED_TABLE)),
            0.0,
        ),
        row(
            ["use_case", SESSIONS_TABLE],
            summary.sessions.inserted,
            Some(count(SESSIONS_TABLE)),
            summary.sessions.seconds,
        ),
        row(["serving", "Cassandra rows written"], served, None, summary.serve.seconds),
    ];
    println!("sessionlake run: {}", summary.source);
    report::table(&["zone", "table", "added", "total", "seconds"], &rows);
    if summary.raw.duplicates > 0 || summary.sessions.updated > 0 {
        println!(
            "(this run also skipped {} duplicate lines and updated {} existing sessions)",
            report::thousands(summary.raw.duplicates),
            report::thousands(summary.sessions.updated)
        );
    }
    if !summary.rejected_by_reason.is_empty() {
        println!();
        let rejected: Vec<Vec<String>> = summary
            .rejected_by_reason
            .iter()
            .map(|(reason, count)| vec![reason.clone(), report::thousands(*count)])
            .collect();
        report::table(&["rejected reason", "rows"], &rejected);
    }
    if !summary.raw.quarantined.is_empty() {
        println!();
        let quarantined: Vec<Vec<String>> =
            summary.raw.quarantined.iter().map(|file| vec![file.file.clone(), file.reason.clone()]).collect();
        report::table(&["quarantined file (not read)", "reason"], &quarantined);
        println!("(`sessionlake quarantine retry FILE` reads it again on the next run, `drop FILE` gives it up)");
    }
    println!("\ndone in {:.1} s", summary.seconds);
}

fn row(names: [&str; 2], added: u64, total: Option<u64>, seconds: f64) -> Vec<String> {
    vec![
        names[0].to_string(),
        names[1].to_string(),
        report::thousands(added),
        total.map_or_else(|| "-".to_string(), report::thousands),
        if seconds > 0.0 { format!("{seconds:.2}") } else { String::new() },
    ]
}
