//! The read predicate of a commit over the tables' date partitions.

use sessionlake_model::tables::raw::EVENT_DATE;
use sessionlake_model::time::date_of_day;

/// `EVENT_DATE IN ('2016-11-01'::date, ...)` as SQL text: the read
/// predicate a commit records (Delta's conflict checker tests concurrent
/// writers' files against it).
pub(crate) fn dates_predicate(days: impl IntoIterator<Item = i32>) -> String {
    let list: Vec<String> = days.into_iter().map(|day| format!("'{}'::date", date_of_day(day))).collect();
    format!("{EVENT_DATE} IN ({})", list.join(", "))
}
