//! Column references and literals for MERGE expressions. Columns are built
//! as `Column` values, never parsed from text, because DataFusion
//! lower-cases unquoted identifiers and our tables have upper-case columns
//! (`EVENT_DATE`, `UNIQUE_ID_ROW`).

use deltalake::datafusion::common::Column;
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::prelude::lit;
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::operations::merge::InsertBuilder;

use crate::schema::TableSpec;

/// Alias of the MERGE target.
pub(crate) const TARGET: &str = "target";
/// Alias of the MERGE source.
pub(crate) const SOURCE: &str = "source";

/// `target.<name>`, case preserved.
pub(crate) fn target(name: &str) -> Expr {
    Expr::Column(Column::new(Some(TARGET), name))
}

/// `source.<name>`, case preserved.
pub(crate) fn source(name: &str) -> Expr {
    Expr::Column(Column::new(Some(SOURCE), name))
}

/// An `EVENT_DATE` value (days since 1970-01-01) as a literal.
pub(crate) fn date_literal(day: i32) -> Expr {
    lit(ScalarValue::Date32(Some(day)))
}

/// `WHEN NOT MATCHED THEN INSERT *`: every column of `spec` from the source.
pub(crate) fn insert_every_column(spec: &TableSpec, insert: InsertBuilder) -> InsertBuilder {
    spec.columns.iter().fold(insert, |insert, &(name, _, _)| insert.set(name, source(name)))
}
