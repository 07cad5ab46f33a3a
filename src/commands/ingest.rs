//! `sessionlake ingest`: one file or URL into the landing zone, or every
//! complete file that appears in a watched folder (`--watch`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sessionlake_lake::landing::{DirWatch, Ingest, LandingReport, Source};
use tracing::{info, warn};

use super::follow::{poll_interval, shutdown_signal};
use super::stages::show_progress;
use crate::config::{GlobalArgs, IngestArgs, WatchArgs};
use crate::report;

/// `sessionlake ingest`.
pub async fn ingest(global: &GlobalArgs, args: &IngestArgs) -> Result<()> {
    if args.watch.dir.is_some() {
        return watch_folder(global, &args.watch, args.download.idle_timeout, shutdown_signal()).await;
    }
    let stage =
        Ingest { lake: global.lake.clone(), source: Source::parse(&args.source), show_progress: show_progress(global) };
    let landed = stage
        .run_with_idle_timeout(args.download.idle_timeout)
        .await
        .with_context(|| format!("while landing {}", args.source))?;
    report::print(global, "ingest", &summary(&landed));
    Ok(())
}

/// Lands every complete file that appears in `watch.dir` (none: returns at
/// once), until `stop` resolves. A file that fails to land (not bzip2, a
/// read error) is reported and skipped until it changes.
pub(crate) async fn watch_folder(
    global: &GlobalArgs,
    watch: &WatchArgs,
    idle_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let Some(dir) = &watch.dir else { return Ok(()) };
    if !dir.is_dir() {
        bail!("--watch {}: not a folder", dir.display());
    }
    info!(dir = %dir.display(), settle = ?watch.settle, "landing the complete files that appear in the folder");
    let mut watcher = DirWatch::new(dir, watch.settle);
    let mut stop = std::pin::pin!(stop);
    loop {
        let ready = watcher.ready(Instant::now()).unwrap_or_else(|error| {
            warn!(dir = %dir.display(), %error, "looking into the watched folder failed; trying again");
            Vec::new()
        });
        for path in ready {
            match land(global, path.clone(), idle_timeout).await {
                Ok(landed) => report::print(global, "ingest", &summary(&landed)),
                Err(error) => warn!(file = %path.display(), error = %crate::one_line(&error), "not landed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll_interval(watch.poll)) => {}
            _ = &mut stop => return Ok(()),
        }
    }
}

async fn land(global: &GlobalArgs, path: PathBuf, idle_timeout: Duration) -> Result<LandingReport> {
    let stage = Ingest { lake: global.lake.clone(), source: Source::File(path.clone()), show_progress: false };
    stage.run_with_idle_timeout(idle_timeout).await.with_context(|| format!("while landing {}", path.display()))
}

fn summary(landed: &LandingReport) -> serde_json::Value {
    serde_json::json!({
        "file": landed.location,
        "sha256": landed.entry.sha256,
        "size": landed.entry.size,
        "already_landed": landed.already_landed,
        "seconds": landed.seconds,
    })
}
