//! Expressions about the tables' date partitions. Columns are built as
//! `Column` values, never parsed from text, because DataFusion lower-cases
//! unquoted identifiers and our tables have upper-case columns
//! (`EVENT_DATE`, `UNIQUE_ID_ROW`).

use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::prelude::lit;
use deltalake::datafusion::scalar::ScalarValue;
use sessionlake_model::tables::raw::EVENT_DATE;
use sessionlake_model::time::date_of_day;

/// An `EVENT_DATE` value (days since 1970-01-01) as a literal.
pub(crate) fn date_literal(day: i32) -> Expr {
    lit(ScalarValue::Date32(Some(day)))
}

/// `EVENT_DATE IN ('2016-11-01'::date, ...)` as SQL text: the read
/// predicate a commit records (Delta's conflict checker tests concurrent
/// writers' files against it).
pub(crate) fn dates_predicate(days: impl IntoIterator<Item = i32>) -> String {
    let list: Vec<String> = days.into_iter().map(|day| format!("'{}'::date", date_of_day(day))).collect();
    format!("{EVENT_DATE} IN ({})", list.join(", "))
}
