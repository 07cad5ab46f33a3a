//! Delta application transactions (`txn` actions): the progress markers
//! that are committed atomically with the data they describe.

use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;

use crate::error::{LakeError, Result};

/// The last version recorded under `app_id` in `table`'s current snapshot.
pub(crate) async fn applied_version(table: &DeltaTable, table_name: &'static str, app_id: &str) -> Result<Option<i64>> {
    let snapshot = table.snapshot().map_err(LakeError::delta(table_name))?;
    snapshot.transaction_version(table.log_store().as_ref(), app_id).await.map_err(LakeError::delta(table_name))
}

/// Commit properties carrying the given markers.
pub(crate) fn commit_with(markers: impl IntoIterator<Item = (String, i64)>) -> CommitProperties {
    let transactions = markers.into_iter().map(|(app_id, version)| Transaction::new(app_id, version)).collect();
    CommitProperties::default().with_application_transactions(transactions)
}
