//! Printing a command's report: aligned `key  value` lines for people, or
//! one JSON object with `--json` for scripts and tests.

use serde::Serialize;
use serde_json::Value;

use crate::config::GlobalArgs;

/// Prints `report` under `title`.
pub fn print<T: Serialize>(global: &GlobalArgs, title: &str, report: &T) {
    let value = serde_json::to_value(report).expect("reports serialize");
    if global.json {
        println!("{value}");
        return;
    }
    println!("{title}");
    let Value::Object(fields) = value else {
        println!("  {value}");
        return;
    };
    let width = fields.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in fields {
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                println!("  {key:<width$}");
                let inner_width = inner.keys().map(String::len).max().unwrap_or(0);
                for (inner_key, inner_value) in inner {
                    println!("    {inner_key:<inner_width$}  {}", plain(&inner_value));
                }
            }
            other => println!("  {key:<width$}  {}", plain(&other)),
        }
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) if number.is_f64() => {
            format!("{:.3}", number.as_f64().unwrap_or_default())
        }
        other => other.to_string(),
    }
}

/// Prints an aligned text table: a header line, a rule, the rows. Columns
/// whose cells all look numeric are right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let columns = headers.len();
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .fold(headers[column].len(), usize::max)
        })
        .collect();
    let numeric: Vec<bool> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .all(|cell| cell.chars().all(|c| c.is_ascii_digit() || matches!(c, ',' | '.' | '-')))
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(column, cell)| {
                let width = widths[column];
                if numeric[column] { format!("{cell:>width$}") } else { format!("{cell:<width$}") }
            })
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    let rules: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    line(rules.iter().map(String::as_str).collect());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
