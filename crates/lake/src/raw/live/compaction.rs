//! Background compaction of the partitions live commits touched: each
//! live commit adds one small file per date, which would make every later
//! scan of the raw table slower.
//!
//! OPTIMIZE writes `dataChange = false` actions: readers of the change data
//! feed (the sessions stage) see no rows from it, and MERGEs that only read
//! the files it replaced are not failed by it. A live MERGE that read a
//! partition the compaction rewrote does conflict (the compacted file is new
//! in a partition it read) and is re-run by the committer.
//!
//! Two compactions of the same files at once (two API processes on one
//! lake) must not both commit, or both add a compacted copy and every row
//! of those files is doubled: the torture suite found 1,300 doubled rows.
//! delta-rs 1.1 lets two `dataChange = false` removes of one file pass its
//! conflict check on purpose (and OPTIMIZE drops the application
//! transactions that would otherwise make them conflict), so one process at
//! a time compacts the raw table: it holds the table's compaction
//! [`Lease`] (records under `_sessionlake_leases/compaction/` in the
//! table's folder; Delta readers ignore `_` folders), which works on local
//! disk and object stores alike, and fences the OPTIMIZE with it: a holder
//! that loses the lease stops before it commits. The others leave their
//! dates for their next compaction.

use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Instant;

use deltalake::operations::optimize::Metrics;
use deltalake::{FilterOp, FilterValue};
use sessionlake_model::tables::raw as columns;
use sessionlake_model::time::date_of_day;
use tracing::{info, warn};

use super::stats::Counters;
use crate::commit_retry::back_off_after_conflict;
use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::lease::{Lease, LeaseSettings};
use crate::schema::RAW;

/// The folder of the raw table's compaction lease, in the table's folder.
const LEASE_FOLDER: &str = "_sessionlake_leases/compaction";

/// How a compaction ended.
pub(super) struct CompactionOutcome {
    /// The dates it was asked to compact.
    pub(super) dates: BTreeSet<i32>,
    /// False when it failed: the dates should be compacted again later.
    pub(super) succeeded: bool,
}

/// Compacts the raw table's partitions of `dates` into files of about
/// `target_size` bytes. Never fails a request: errors are logged and
/// counted, and the caller tries the dates again later.
pub(super) async fn compact(
    lake: Lake,
    dates: BTreeSet<i32>,
    target_size: u64,
    max_conflict_retries: u32,
    counters: Arc<Counters>,
) -> CompactionOutcome {
    let started = Instant::now();
    match optimize_dates(&lake, &dates, target_size, max_conflict_retries).await {
        Ok(None) => {
            info!(
                dates = dates.len(),
                "another process is compacting the raw table; these dates wait for the next compaction"
            );
            CompactionOutcome { dates, succeeded: false }
        }
        Ok(Some((metrics, conflicts_retried))) => {
            info!(
                dates = dates.len(),
                files_removed = metrics.num_files_removed,
                files_added = metrics.num_files_added,
                partitions = metrics.partitions_optimized,
                conflicts_retried,
                ms = started.elapsed().as_millis() as u64,
                "compacted live partitions"
            );
            Counters::add(&counters.compactions, 1u64);
            Counters::add(&counters.files_compacted, metrics.num_files_removed);
            Counters::add(&counters.files_written_by_compaction, metrics.num_files_added);
            CompactionOutcome { dates, succeeded: true }
        }
        Err(error) => {
            warn!(dates = dates.len(), error = %error, "compaction failed; its dates are compacted next time");
            Counters::add(&counters.compaction_failures, 1u64);
            CompactionOutcome { dates, succeeded: false }
        }
    }
}

/// OPTIMIZE (bin-packing) of the partitions of `dates`, on a freshly opened
/// table, again on a commit conflict, under the table's compaction lease.
/// Returns delta-rs's metrics and the conflicts retried, or `None` when
/// another compaction holds the lease (nothing was done).
pub async fn optimize_dates(
    lake: &Lake,
    dates: &BTreeSet<i32>,
    target_size: u64,
    max_conflict_retries: u32,
) -> Result<Option<(Metrics, u32)>> {
    let Some(lease) = Lease::try_take(lake.store()?, lease_folder(), LeaseSettings::default()).await? else {
        return Ok(None);
    };
    let outcome = optimize_dates_under(&lease, lake, dates, target_size, max_conflict_retries).await;
    if let Err(error) = lease.release().await {
        warn!(%error, "releasing the compaction lease failed; it expires by itself");
    }
    outcome.map(Some)
}

/// Where the raw table's compaction lease is, in the lake's store.
pub fn lease_folder() -> object_store::path::Path {
    object_store::path::Path::from(format!("{}/{LEASE_FOLDER}", RAW.dir))
}

/// The OPTIMIZE of [`optimize_dates`], fenced by `lease` (held by the
/// caller): it fails with [`LakeError::LeaseLost`], committing nothing,
/// once the lease is lost or about to expire.
pub async fn optimize_dates_under(
    lease: &Lease,
    lake: &Lake,
    dates: &BTreeSet<i32>,
    target_size: u64,
    max_conflict_retries: u32,
) -> Result<(Metrics, u32)> {
    let date_texts: Vec<String> = dates.iter().map(|&day| date_of_day(day).to_string()).collect();
    let filters =
        [(columns::EVENT_DATE, FilterOp::In, FilterValue::Set(date_texts.iter().map(String::as_str).collect()))];
    let target_size = NonZeroU64::new(target_size).unwrap_or(NonZeroU64::MIN);
    let optimize = async {
        let mut conflicts_retried = 0;
        loop {
            let table = lake.open(&RAW).await?.ok_or_else(|| LakeError::Unexpected {
                table: RAW.name,
                message: "the table to compact does not exist".to_string(),
            })?;
            let optimize = table
                .optimize()
                .with_filters(&filters)
                .with_target_size(target_size)
                .with_writer_properties(crate::raw::writer_properties(None));
            match optimize.await {
                Ok((_, metrics)) => return Ok((metrics, conflicts_retried)),
                Err(error) => {
                    back_off_after_conflict(error, &mut conflicts_retried, max_conflict_retries, "a compaction")
                        .await
                        .map_err(LakeError::delta(RAW.name))?;
                }
            }
        }
    };
    lease.fence(optimize).await?
}
