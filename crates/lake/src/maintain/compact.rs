//! Compaction of small files, partition by partition (OPTIMIZE, bin-packing).
//!
//! One compaction per table at a time: two OPTIMIZEs of the same files
//! would both commit and double their rows (see `raw::live::compaction`),
//! so each runs under the table's compaction lease. The raw table goes
//! through the live-ingest compaction path (same lease, same fencing);
//! the rejected and gold tables take the same kind of lease in their own
//! folder. OPTIMIZE commits `dataChange = false`: readers of the change
//! feed see nothing new from it.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;

use chrono::NaiveDate;
use deltalake::operations::optimize::Metrics;
use deltalake::{DeltaTable, FilterOp, FilterValue};
use object_store::path::Path;
use tracing::warn;

use super::MaintainSettings;
use crate::commit_retry::back_off_after_conflict;
use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::lease::{Lease, LeaseSettings};
use crate::raw::live::{compact_dates_under, compaction_lease_folder};
use crate::schema::{RAW, TableSpec};

/// What the compaction of one table did.
pub(super) struct Compaction {
    pub(super) status: String,
    pub(super) partitions: u64,
    pub(super) files_removed: u64,
    pub(super) files_added: u64,
}

/// The partitions worth compacting: those holding at least
/// `min_files_to_compact` (and at least 2) files smaller than the target,
/// with how many such files each holds. Keyed by the partition value
/// (`""` for an unpartitioned table).
pub(super) fn plan(table: &DeltaTable, spec: TableSpec, settings: &MaintainSettings) -> Result<BTreeMap<String, u64>> {
    let snapshot = table.snapshot().map_err(LakeError::delta(spec.name))?;
    let mut small_files: BTreeMap<String, u64> = BTreeMap::new();
    for file in snapshot.log_data().iter() {
        if file.size() >= settings.target_file_size as i64 {
            continue;
        }
        let partition = match spec.partition_by {
            Some(column) => file.partition_values_map().remove(column).flatten().unwrap_or_default(),
            None => String::new(),
        };
        *small_files.entry(partition).or_default() += 1;
    }
    let least = settings.min_files_to_compact.max(2) as u64;
    small_files.retain(|_, files| *files >= least);
    Ok(small_files)
}

/// Compacts the partitions [`plan`] picks, unless another process holds
/// the table's compaction lease (then it is left for the next pass).
pub(super) async fn compact(
    lake: &Lake,
    spec: TableSpec,
    table: &DeltaTable,
    settings: &MaintainSettings,
) -> Result<Compaction> {
    let planned = plan(table, spec, settings)?;
    let mut outcome = Compaction {
        status: String::new(),
        partitions: planned.len() as u64,
        files_removed: planned.values().sum(),
        files_added: 0,
    };
    if planned.is_empty() {
        outcome.status = "nothing to compact".to_string();
        return Ok(outcome);
    }
    if settings.dry_run {
        outcome.status = "would compact".to_string();
        return Ok(outcome);
    }
    let Some(lease) = Lease::try_take(lake.store()?, lease_folder(spec), LeaseSettings::default()).await? else {
        outcome = Compaction {
            status: "skipped: another process is compacting this table".to_string(),
            partitions: 0,
            files_removed: 0,
            files_added: 0,
        };
        return Ok(outcome);
    };
    let partitions: Vec<String> = planned.into_keys().collect();
    let compacted = if spec.name == RAW.name {
        let dates = partitions.iter().map(|text| day_number(spec, text)).collect::<Result<BTreeSet<i32>>>()?;
        compact_dates_under(&lease, lake, &dates, settings.target_file_size, settings.max_conflict_retries).await
    } else {
        optimize_under(&lease, lake, spec, &partitions, settings).await
    };
    if let Err(error) = lease.release().await {
        warn!(%error, table = spec.name, "releasing the compaction lease failed; it expires by itself");
    }
    let (metrics, _conflicts_retried) = compacted?;
    outcome.status = "compacted".to_string();
    outcome.partitions = metrics.partitions_optimized;
    outcome.files_removed = metrics.num_files_removed;
    outcome.files_added = metrics.num_files_added;
    Ok(outcome)
}

/// Where a table's compaction lease lives: `_sessionlake_leases/compaction`
/// in its folder (the raw table's is the one live ingest uses).
pub(super) fn lease_folder(spec: TableSpec) -> Path {
    if spec.name == RAW.name {
        return compaction_lease_folder();
    }
    Path::from(format!("{}/_sessionlake_leases/compaction", spec.dir))
}

/// OPTIMIZE of `partitions` of a table other than raw, on a freshly opened
/// table, again after a lost commit race, fenced by `lease`.
async fn optimize_under(
    lease: &Lease,
    lake: &Lake,
    spec: TableSpec,
    partitions: &[String],
    settings: &MaintainSettings,
) -> Result<(Metrics, u32)> {
    let filters = match spec.partition_by {
        Some(column) => vec![(column, FilterOp::In, FilterValue::Set(partitions.iter().map(String::as_str).collect()))],
        None => Vec::new(),
    };
    let target_size = NonZeroU64::new(settings.target_file_size).unwrap_or(NonZeroU64::MIN);
    let optimize = async {
        let mut conflicts_retried = 0;
        loop {
            let table = super::reopen(lake, spec).await?;
            match table.optimize().with_filters(&filters).with_target_size(target_size).await {
                Ok((_, metrics)) => return Ok((metrics, conflicts_retried)),
                Err(error) => {
                    back_off_after_conflict(
                        error,
                        &mut conflicts_retried,
                        settings.max_conflict_retries,
                        "a compaction",
                    )
                    .await
                    .map_err(LakeError::delta(spec.name))?;
                }
            }
        }
    };
    lease.fence(optimize).await?
}

/// The day number (days since 1970-01-01) of a date partition's value.
fn day_number(spec: TableSpec, text: &str) -> Result<i32> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|error| LakeError::Unexpected {
        table: spec.name,
        message: format!("partition value {text:?} is not a date: {error}"),
    })?;
    Ok(sessionlake_model::time::day_of_date(date))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_partitions_are_day_numbers() {
        assert_eq!(day_number(RAW, "1970-01-01").unwrap(), 0);
        assert_eq!(day_number(RAW, "2016-11-07").unwrap(), 17_112);
        assert_eq!(sessionlake_model::time::date_of_day(17_112).to_string(), "2016-11-07");
        assert!(day_number(RAW, "not a date").is_err());
    }

    #[test]
    fn each_table_compacts_under_a_lease_in_its_own_folder() {
        assert_eq!(lease_folder(RAW), compaction_lease_folder());
        assert_eq!(
            lease_folder(crate::schema::SESSIONS).to_string(),
            "use_case/uc_assignment/uc_delta_session_events/_sessionlake_leases/compaction"
        );
    }
}
