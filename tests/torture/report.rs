//! The suite's report: each check appends one JSON object (a line) to
//! `<test binary>-report.jsonl` in Cargo's temp dir for integration tests
//! (`torture-report.jsonl`, and `cluster-report.jsonl` from the cluster
//! tests, which share this module); the first line written by a test
//! process starts its file afresh. `scripts/torture-report` turns both into
//! one table.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::Value;

/// Where the report is written.
pub fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(concat!(env!("CARGO_CRATE_NAME"), "-report.jsonl"))
}

/// Appends `entry` (with its `kind`) to the report.
pub fn record(kind: &str, mut entry: Value) {
    static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);
    entry["kind"] = kind.into();
    let mut file = FILE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let file = file.get_or_insert_with(|| {
        std::fs::File::create(path()).expect("the report file");
        // Appends: a line is never torn by another writer.
        std::fs::OpenOptions::new().append(true).open(path()).expect("the report file")
    });
    writeln!(file, "{entry}").expect("the report is written");
}
