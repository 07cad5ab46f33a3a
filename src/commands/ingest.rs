//! `sessionlake ingest`: one file or URL into the landing zone.

use anyhow::{Context, Result};
use sessionlake_lake::landing::{Ingest, Source};

use super::stages::show_progress;
use crate::config::{GlobalArgs, IngestArgs};
use crate::report;

/// `sessionlake ingest`.
pub async fn ingest(global: &GlobalArgs, args: &IngestArgs) -> Result<()> {
    let stage =
        Ingest { lake: global.lake.clone(), source: Source::parse(&args.source), show_progress: show_progress(global) };
    let landed = stage
        .run_with_idle_timeout(args.download.idle_timeout)
        .await
        .with_context(|| format!("while landing {}", args.source))?;
    let summary = serde_json::json!({
        "file": landed.location,
        "sha256": landed.entry.sha256,
        "size": landed.entry.size,
        "already_landed": landed.already_landed,
        "seconds": landed.seconds,
    });
    report::print(global, "ingest", &summary);
    Ok(())
}
