//! `sessionlake sql`: ad-hoc SQL (DataFusion) over the lake's tables.

use std::io::Write;

use anyhow::{Context, Result};
use sessionlake_lake::Lake;
use sessionlake_lake::query::{AsOf, format_table, sql_as_of, write_csv, write_json};

use crate::config::{GlobalArgs, SqlArgs, SqlFormat};

/// `sessionlake sql`.
pub async fn sql(global: &GlobalArgs, args: &SqlArgs) -> Result<()> {
    // clap makes --table and --version come together.
    let as_of = args.table.clone().zip(args.version).map(|(table, version)| AsOf { table, version });
    let batches = sql_as_of(&Lake::new(&global.lake), &args.statement, as_of.as_ref())
        .await
        .with_context(|| format!("while running {:?}", args.statement))?;
    let format = if global.json { SqlFormat::Json } else { args.format };
    let mut out = std::io::stdout().lock();
    match format {
        SqlFormat::Table => writeln!(out, "{}", format_table(&batches)?)?,
        SqlFormat::Csv => write_csv(&mut out, &batches)?,
        SqlFormat::Json => {
            write_json(&mut out, &batches)?;
            writeln!(out)?;
        }
    }
    Ok(())
}
