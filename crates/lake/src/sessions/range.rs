//! How many raw versions one micro-batch folds: sized by the rows the
//! versions added, read from their commit entries before any data is read,
//! so a micro-batch's memory follows `max_rows` whatever wrote raw (chunks
//! of a file, live ingest's small groups, or a table of older commits).

use deltalake::DeltaTable;
use deltalake::kernel::Version;

use crate::error::{LakeError, Result};
use crate::schema::RAW;

/// The last version of the micro-batch that starts at `from`: at most
/// `max_versions` versions up to `latest`, adding no more than `max_rows`
/// rows between them, except that a first version holding more than
/// `max_rows` rows is a micro-batch of its own.
pub(super) async fn range_end(
    raw: &DeltaTable,
    from: u64,
    latest: u64,
    max_rows: u64,
    max_versions: u64,
) -> Result<u64> {
    let last = latest.min(from + max_versions.max(1) - 1);
    let mut rows = 0;
    let mut to = from;
    for version in from..=last {
        let added = rows_added(raw, version).await?;
        if version > from && rows + added > max_rows {
            break;
        }
        rows += added;
        to = version;
    }
    Ok(to)
}

/// The rows the commit of `version` added with new data (`dataChange`
/// adds: a compaction's rewrites add none), from the files' statistics. A
/// commit entry that is gone counts none: reading its changes then fails
/// with [`LakeError::HistoryGone`].
async fn rows_added(raw: &DeltaTable, version: u64) -> Result<u64> {
    let entry = raw.log_store().read_commit_entry(version as Version).await.map_err(LakeError::delta(RAW.name))?;
    let Some(entry) = entry else { return Ok(0) };
    Ok(rows_in_commit(&entry))
}

/// The `numRecords` of the data-changing `add` actions of one commit entry
/// (newline-delimited JSON actions).
fn rows_in_commit(entry: &[u8]) -> u64 {
    entry
        .split(|&byte| byte == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter_map(|action| {
            let add = action.get("add")?;
            if add.get("dataChange").and_then(serde_json::Value::as_bool) == Some(false) {
                return None;
            }
            let stats: serde_json::Value = serde_json::from_str(add.get("stats")?.as_str()?).ok()?;
            stats.get("numRecords")?.as_u64()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::rows_in_commit;

    #[test]
    fn counts_the_rows_of_data_changing_adds_only() {
        let entry = br#"{"commitInfo":{"operation":"MERGE"}}
{"txn":{"appId":"a","version":3}}
{"add":{"path":"a.parquet","dataChange":true,"stats":"{\"numRecords\":120}"}}
{"add":{"path":"b.parquet","dataChange":true,"stats":"{\"numRecords\":7}"}}
{"add":{"path":"c.parquet","dataChange":false,"stats":"{\"numRecords\":1000}"}}
{"remove":{"path":"d.parquet","dataChange":false}}
{"add":{"path":"e.parquet","dataChange":true}}
"#;
        assert_eq!(rows_in_commit(entry), 127);
        assert_eq!(rows_in_commit(b""), 0);
    }
}
