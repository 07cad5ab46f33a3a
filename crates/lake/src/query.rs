//! Ad-hoc SQL over the lake: a DataFusion context with every existing table
//! registered under its name (`r_session_events`, `r_session_events_rejected`,
//! `uc_delta_session_events`).

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::delta_datafusion::{DeltaCdfTableProvider, create_session};

use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::schema::{RAW, REJECTED, SESSIONS};

/// A context where each table of the lake that exists is registered.
pub async fn session_context(lake: &Lake) -> Result<SessionContext> {
    let context = create_session().into_inner();
    for spec in [RAW, REJECTED, SESSIONS] {
        if let Some(table) = lake.open(&spec).await? {
            let provider = table.table_provider().await.map_err(LakeError::query(spec.name))?;
            context.register_table(spec.name, provider).map_err(LakeError::query(spec.name))?;
        }
    }
    Ok(context)
}

/// Runs one SQL statement over the lake and collects the result.
pub async fn sql(lake: &Lake, statement: &str) -> Result<Vec<RecordBatch>> {
    let context = session_context(lake).await?;
    let frame = context.sql(statement).await.map_err(LakeError::query("sql"))?;
    frame.collect().await.map_err(LakeError::query("sql"))
}

/// Runs `select` over the change data feed of `table` for versions
/// `from..=to`, registered as the table `changes` (with the feed's
/// `_change_type`, `_commit_version` and `_commit_timestamp` columns).
pub(crate) async fn changes(
    table: &DeltaTable,
    table_name: &'static str,
    from: u64,
    to: u64,
    select: &str,
) -> Result<Vec<RecordBatch>> {
    let context = create_session().into_inner();
    let cdf = table.clone().scan_cdf().with_starting_version(from).with_ending_version(to);
    let provider = DeltaCdfTableProvider::try_new(cdf).map_err(LakeError::delta(table_name))?;
    context.register_table("changes", Arc::new(provider)).map_err(LakeError::query(table_name))?;
    let frame = context.sql(select).await.map_err(LakeError::query(table_name))?;
    frame.collect().await.map_err(LakeError::query(table_name))
}
