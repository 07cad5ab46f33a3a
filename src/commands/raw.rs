//! `sessionlake raw`: landed files into the raw and rejected tables, once
//! or following the landing zone (`--follow`).

use anyhow::{Context, Result};
use sessionlake_lake::raw::RawReport;

use super::follow::{Trigger, follow, poll_interval, shutdown_signal};
use super::quarantine;
use super::stages::raw_stage;
use crate::config::{GlobalArgs, RawArgs};
use crate::report;

/// The error context of a raw pass.
pub(crate) const RAW_CONTEXT: &str = "while refining landed files into the raw table";

/// `sessionlake raw`.
pub async fn raw(global: &GlobalArgs, args: &RawArgs) -> Result<()> {
    let stage = raw_stage(global);
    if args.follow {
        let pass = || async { stage.run().await.context(RAW_CONTEXT) };
        let trigger = Trigger::landing(&global.lake)?;
        follow(poll_interval(args.poll_seconds), shutdown_signal(), trigger, pass, show_raw(global)).await;
        return Ok(());
    }
    let outcome = stage.run().await.context(RAW_CONTEXT)?;
    report::print(global, "raw", &outcome);
    quarantine::warn_quarantined(&outcome.quarantined);
    Ok(())
}

/// Prints a raw outcome that read a file; a follow loop goes on.
pub(crate) fn show_raw(global: &GlobalArgs) -> impl FnMut(&RawReport) -> bool {
    move |outcome| {
        if outcome.files_processed > 0 || outcome.newly_quarantined > 0 {
            report::print(global, "raw", outcome);
            quarantine::warn_quarantined(&outcome.quarantined);
        }
        true
    }
}
