//! `sessionlake sql`: ad-hoc SQL (DataFusion) over the lake's tables.
//!
//! CSV and JSON are written batch by batch as the query produces them, so a
//! `SELECT *` of a big table never sits in memory whole; the aligned table
//! needs every row to size its columns, so it collects the result first.

use std::io::Write;

use anyhow::{Context, Result};
use sessionlake_lake::query::{AsOf, format_table, sql_as_of, sql_stream_as_of, write_csv_stream, write_json_stream};

use crate::config::{GlobalArgs, SqlArgs, SqlFormat};

/// `sessionlake sql`.
pub async fn sql(global: &GlobalArgs, args: &SqlArgs) -> Result<()> {
    // clap makes --table and --version come together.
    let as_of = args.table.clone().zip(args.version).map(|(table, version)| AsOf { table, version });
    let lake = global.lake.clone();
    let running = || format!("while running {:?}", args.statement);
    let format = if global.json { SqlFormat::Json } else { args.format };
    let mut out = std::io::stdout().lock();
    match format {
        SqlFormat::Table => {
            let batches = sql_as_of(&lake, &args.statement, as_of.as_ref()).await.with_context(running)?;
            writeln!(out, "{}", format_table(&batches)?)?;
        }
        SqlFormat::Csv => {
            let batches = sql_stream_as_of(&lake, &args.statement, as_of.as_ref()).await.with_context(running)?;
            write_csv_stream(&mut out, batches).await.with_context(running)?;
        }
        SqlFormat::Json => {
            let batches = sql_stream_as_of(&lake, &args.statement, as_of.as_ref()).await.with_context(running)?;
            write_json_stream(&mut out, batches).await.with_context(running)?;
            writeln!(out)?;
        }
    }
    Ok(())
}
