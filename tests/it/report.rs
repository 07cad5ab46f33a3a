//! The torture report: each check appends one JSON object (a line) to a
//! file in Cargo's temp dir for integration tests: `cluster-report.jsonl`
//! for the cluster scenarios (kind `cluster`), `torture-report.jsonl` for
//! every other kind; the first line written to a file by a test process
//! starts it afresh. `scripts/torture-report` turns both into one table.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::Value;

/// Where the entries of `kind` are written.
pub fn path(kind: &str) -> PathBuf {
    let suite = if kind == "cluster" { "cluster" } else { "torture" };
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{suite}-report.jsonl"))
}

/// Appends `entry` (with its `kind`) to the report.
pub fn record(kind: &str, mut entry: Value) {
    static FILES: Mutex<BTreeMap<PathBuf, std::fs::File>> = Mutex::new(BTreeMap::new());
    entry["kind"] = kind.into();
    let path = path(kind);
    let mut files = FILES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let file = files.entry(path.clone()).or_insert_with(|| {
        std::fs::File::create(&path).expect("the report file");
        // Appends: a line is never torn by another writer.
        std::fs::OpenOptions::new().append(true).open(&path).expect("the report file")
    });
    writeln!(file, "{entry}").expect("the report is written");
}
