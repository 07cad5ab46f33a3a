//! Ad-hoc SQL over the lake: a DataFusion context with every existing table
//! registered under its name (`r_session_events`, `r_session_events_rejected`,
//! `uc_delta_session_events`).

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::delta_datafusion::{DeltaCdfTableProvider, create_session};
use futures::StreamExt;

use crate::error::{LakeError, Result};
use crate::lake::Lake;
use crate::schema::{RAW, REJECTED, SESSIONS};

/// One table read as of an older version (time travel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsOf {
    /// The table's name (`r_session_events`, `r_session_events_rejected`,
    /// `uc_delta_session_events`).
    pub table: String,
    /// The Delta version to read.
    pub version: u64,
}

/// A context where each table of the lake that exists is registered.
pub async fn session_context(lake: &Lake) -> Result<SessionContext> {
    session_context_as_of(lake, None).await
}

/// Like [`session_context`], with `as_of`'s table at its older version.
pub async fn session_context_as_of(lake: &Lake, as_of: Option<&AsOf>) -> Result<SessionContext> {
    let specs = [RAW, REJECTED, SESSIONS];
    if let Some(as_of) = as_of
        && !specs.iter().any(|spec| spec.name == as_of.table)
    {
        let names: Vec<&str> = specs.iter().map(|spec| spec.name).collect();
        return Err(LakeError::Unexpected {
            table: "sql",
            message: format!("no table {:?} to time-travel (tables: {})", as_of.table, names.join(", ")),
        });
    }
    let context = create_session().into_inner();
    for spec in specs {
        let Some(mut table) = lake.open(&spec).await? else { continue };
        if let Some(as_of) = as_of.filter(|as_of| as_of.table == spec.name) {
            let latest = table.version().unwrap_or(0);
            if as_of.version > latest {
                return Err(LakeError::Unexpected {
                    table: spec.name,
                    message: format!("no version {} (versions 0 to {latest})", as_of.version),
                });
            }
            table.load_version(as_of.version).await.map_err(LakeError::delta(spec.name))?;
        }
        let provider = table.table_provider().await.map_err(LakeError::query(spec.name))?;
        context.register_table(spec.name, provider).map_err(LakeError::query(spec.name))?;
    }
    Ok(context)
}

/// Runs one SQL statement over the lake and collects the result.
pub async fn sql(lake: &Lake, statement: &str) -> Result<Vec<RecordBatch>> {
    sql_as_of(lake, statement, None).await
}

/// Runs one SQL statement, reading `as_of`'s table at its older version.
pub async fn sql_as_of(lake: &Lake, statement: &str, as_of: Option<&AsOf>) -> Result<Vec<RecordBatch>> {
    let context = session_context_as_of(lake, as_of).await?;
    let frame = context.sql(statement).await.map_err(LakeError::query("sql"))?;
    frame.collect().await.map_err(LakeError::query("sql"))
}

/// Runs one SQL statement, reading `as_of`'s table at its older version,
/// and hands its batches over as the plan produces them: memory stays
/// bounded by what the plan itself holds (a sort, an aggregate), not by
/// the size of the result.
pub async fn sql_stream_as_of(lake: &Lake, statement: &str, as_of: Option<&AsOf>) -> Result<BatchStream> {
    let context = session_context_as_of(lake, as_of).await?;
    let frame = context.sql(statement).await.map_err(LakeError::query("sql"))?;
    frame.execute_stream().await.map_err(LakeError::query("sql"))
}

/// Record batches as a query produces them.
pub type BatchStream = deltalake::datafusion::physical_plan::SendableRecordBatchStream;

/// Runs `select` over the change data feed of `table` for versions
/// `from..=to`, registered as the table `changes` (with the feed's
/// `_change_type`, `_commit_version` and `_commit_timestamp` columns).
///
/// A range whose log entry or data file is gone fails with
/// [`LakeError::HistoryGone`], never with fewer rows: the reader then
/// rebuilds from a snapshot ([`crate::rebuild`]) instead of skipping data.
pub(crate) async fn changes(
    table: &DeltaTable,
    table_name: &'static str,
    from: u64,
    to: u64,
    select: &str,
) -> Result<Vec<RecordBatch>> {
    read_changes(table, table_name, from, to, select)
        .await
        .map_err(|error| as_history_gap(error, table, table_name, from))
}

async fn read_changes(
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

/// `error` as [`LakeError::HistoryGone`] when its cause is a log entry of a
/// version the table has (delta-rs: `InvalidVersion` at or below the
/// latest) or a data file that is not found; any other error unchanged.
pub(crate) fn as_history_gap(error: LakeError, table: &DeltaTable, table_name: &'static str, from: u64) -> LakeError {
    let latest = table.version().unwrap_or(0);
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = cause {
        if let Some(deltalake::DeltaTableError::InvalidVersion(version)) = current.downcast_ref()
            && *version <= latest
        {
            let version = *version;
            let missing = format!("log entry _delta_log/{version:020}.json");
            return LakeError::HistoryGone { table: table_name, version, missing };
        }
        if let Some(object_store::Error::NotFound { path, .. }) = current.downcast_ref() {
            let missing = format!("data file {path}");
            return LakeError::HistoryGone { table: table_name, version: from, missing };
        }
        // The Parquet reader keeps only the text of the store's error.
        if let Some(parquet) = current.downcast_ref::<deltalake::parquet::errors::ParquetError>()
            && let Some(file) = missing_parquet_file(&parquet.to_string())
        {
            let missing = format!("data file {file}");
            return LakeError::HistoryGone { table: table_name, version: from, missing };
        }
        cause = current.source();
    }
    error
}

/// The file of a Parquet error that says its object was not found
/// ("… for file <file>: Object Store error: Object at location … not
/// found …"), if it says so.
fn missing_parquet_file(message: &str) -> Option<&str> {
    let (before, after) = message.split_once(": Object Store error: ")?;
    if !after.contains("not found") {
        return None;
    }
    Some(before.rsplit_once("for file ").map_or(before, |(_, file)| file))
}

/// Query results as an aligned text table.
pub fn format_table(batches: &[RecordBatch]) -> Result<String> {
    Ok(deltalake::arrow::util::pretty::pretty_format_batches(batches)?.to_string())
}

/// Query results as text, row by row: each value cast to a string, `None`
/// for null (for callers that read a few small answers).
pub fn text_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<Option<String>>>> {
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::compute::cast;
    use deltalake::arrow::datatypes::DataType;

    let mut rows = Vec::new();
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .map(|column| cast(column, &DataType::Utf8))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|column| (!column.is_null(row)).then(|| column.as_string::<i32>().value(row).to_string()))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// Query results as CSV with a header line.
pub fn write_csv(writer: impl std::io::Write, batches: &[RecordBatch]) -> Result<()> {
    let mut csv = deltalake::arrow::csv::WriterBuilder::new().with_header(true).build(writer);
    for batch in batches {
        csv.write(batch)?;
    }
    Ok(())
}

/// Streamed query results as CSV with a header line, each batch written
/// as it comes; returns the rows written.
pub async fn write_csv_stream(writer: impl std::io::Write, mut batches: BatchStream) -> Result<u64> {
    let mut csv = deltalake::arrow::csv::WriterBuilder::new().with_header(true).build(writer);
    let mut rows = 0;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(LakeError::query("sql"))?;
        csv.write(&batch)?;
        rows += batch.num_rows() as u64;
    }
    Ok(rows)
}

/// Streamed query results as one JSON array of objects, each batch written
/// as it comes; returns the rows written.
pub async fn write_json_stream(writer: impl std::io::Write, mut batches: BatchStream) -> Result<u64> {
    let mut json = deltalake::arrow::json::ArrayWriter::new(writer);
    let mut rows = 0;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(LakeError::query("sql"))?;
        json.write(&batch)?;
        rows += batch.num_rows() as u64;
    }
    json.finish()?;
    Ok(rows)
}

/// Query results as one JSON array of objects.
pub fn write_json(writer: impl std::io::Write, batches: &[RecordBatch]) -> Result<()> {
    let mut json = deltalake::arrow::json::ArrayWriter::new(writer);
    for batch in batches {
        json.write(batch)?;
    }
    json.finish()?;
    Ok(())
}

/// The values of a text column `name`, as Arrow holds it after a Parquet
/// read: `Utf8` or `Utf8View`.
pub(crate) fn text_values<'a>(
    column: &'a ArrayRef,
    name: &str,
) -> deltalake::DeltaResult<Box<dyn Iterator<Item = Option<&'a str>> + 'a>> {
    if let Some(view) = column.as_string_view_opt() {
        Ok(Box::new(view.iter()))
    } else if let Some(text) = column.as_string_opt::<i32>() {
        Ok(Box::new(text.iter()))
    } else {
        Err(deltalake::DeltaTableError::Generic(format!("{name} read as {}, not text", column.data_type())))
    }
}

#[cfg(test)]
mod tests {
    use super::missing_parquet_file;

    #[test]
    fn a_parquet_error_names_the_file_that_is_not_found() {
        let message = "Parquet error: Failed to fetch metadata for file _change_data/EVENT_DATE=2016-11-04/part-0.parquet: \
                       Object Store error: Object at location /lake/_change_data/EVENT_DATE=2016-11-04/part-0.parquet \
                       not found: No such file or directory (os error 2)";
        assert_eq!(missing_parquet_file(message), Some("_change_data/EVENT_DATE=2016-11-04/part-0.parquet"));
        assert_eq!(missing_parquet_file("Parquet error: Object Store error: permission denied"), None);
        assert_eq!(missing_parquet_file("Parquet error: bad magic"), None);
    }
}
