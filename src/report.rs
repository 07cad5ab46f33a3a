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
