//! `sessionlake raw`: landed files into the raw and rejected tables.

use anyhow::{Context, Result};

use super::quarantine;
use super::stages::raw_stage;
use crate::config::GlobalArgs;
use crate::report;

/// `sessionlake raw`.
pub async fn raw(global: &GlobalArgs) -> Result<()> {
    let outcome = raw_stage(global).run().await.context("while refining landed files into the raw table")?;
    report::print(global, "raw", &outcome);
    quarantine::warn_quarantined(&outcome.quarantined);
    Ok(())
}
