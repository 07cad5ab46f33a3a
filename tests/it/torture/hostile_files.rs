//! Hostile input files: every case of the corpus in `tests/corpus` goes
//! through the real binary — `ingest --source FILE`, then `raw` — in a lake
//! of its own, and must end exactly as `tests/corpus/cases.json` says
//! (`tests/corpus/make.py` writes the files and that list, with the reasoning
//! behind each expected outcome):
//!
//! - a file that parses: the `raw` report's counts, `lines = inserted +
//!   rejected + duplicates`, a second `raw` that reads nothing, and then the
//!   tables themselves through `sessionlake sql` — row counts, rejects per
//!   reason, every raw row (ts as stored, in UTC) and every rejected line's
//!   exact bytes, line number and source file;
//! - a file that `ingest` refuses (not bzip2): one line on stderr, `error: …`
//!   naming the file, nothing landed;
//! - a landed file that does not decompress: quarantined by `raw`, which
//!   succeeds, reports it with the decoder's complaint and prints one
//!   warning line naming it — on this run and every later one, without
//!   reading it again — while one `corrupt_file` row of the rejected table
//!   records it and nothing of its lines is written; a good file landed
//!   after it is processed; `quarantine drop` ends it.
//!
//! Every command of every case also runs with `RUST_BACKTRACE=0` and must end
//! with exit code 0 or 1: never a panic (101, or "panicked" on stderr) and
//! never a signal.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::report;

/// Lakes processed at the same time (the machine has 2 cores; `raw` is
/// mostly one thread waiting on Delta commits).
const PARALLEL_CASES: usize = 3;

#[derive(Debug, Deserialize)]
struct Corpus {
    /// The good file landed after each error case.
    follow_up: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    file: String,
    what: String,
    expect: Expect,
    /// Lines of the decompressed file (success cases).
    #[serde(default)]
    lines: u64,
    /// The expected rows of `r_session_events`.
    #[serde(default)]
    raw: Vec<RawRow>,
    /// The expected rows of `r_session_events_rejected`, in line order.
    #[serde(default)]
    rejected_lines: Vec<RejectedLine>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expect {
    Error {
        error: String,
        stage: Stage,
    },
    /// Quarantined by `raw`, with a reason containing this text.
    Quarantined {
        quarantined: String,
    },
    Counts {
        raw_rows: u64,
        rejected: BTreeMap<String, u64>,
        duplicates: u64,
    },
}

/// Where a case fails as one error: only `ingest` refuses a file now (a
/// landed file that does not decompress is quarantined instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Stage {
    Ingest,
}

/// The rejected table's reason code of a quarantined file.
const CORRUPT_FILE: &str = "corrupt_file";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
struct RawRow {
    event_date: String,
    unique_id_row: String,
    event: String,
    session_id: String,
    player_id: String,
    country: Option<String>,
    ts_micros: i64,
}

#[derive(Debug, Deserialize)]
struct RejectedLine {
    line_number: u64,
    reason: String,
    length: u64,
    /// The exact bytes, for lines up to 4096 bytes.
    hex: Option<String>,
}

/// Lines longer than this are compared by length only (their hex would be
/// tens of megabytes of query output).
const HEX_LIMIT: u64 = 4096;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn load_corpus() -> Corpus {
    let path = corpus_dir().join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()))
}

/// One finished command.
struct Run {
    command: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn succeeded(&self) -> bool {
        self.code == 0
    }

    fn describe(&self) -> String {
        format!("`{}` exited {}; stderr: {}", self.command, self.code, self.stderr.trim_end())
    }

    /// The one JSON value a successful `--json` command prints.
    fn json(&self) -> Result<Value, String> {
        if !self.succeeded() {
            return Err(self.describe());
        }
        serde_json::from_str(&self.stdout)
            .map_err(|error| format!("`{}` printed no JSON ({error}): {:?}", self.command, self.stdout))
    }
}

/// Runs the binary on `lake` with the environment of a plain user run (no
/// `SESSIONLAKE_*` setting leaks in from the caller, no log filter) and
/// checks the promise every command keeps: it ends with 0 or 1, never a
/// panic or a signal.
fn sessionlake(lake: &Path, args: &[&OsStr], problems: &mut Vec<String>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessionlake"));
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("SESSIONLAKE_") || name_text == "RUST_LOG" {
            command.env_remove(&name);
        }
    }
    command.env("RUST_BACKTRACE", "0").arg("--lake").arg(lake).arg("--json").args(args);
    let text = args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    let output = command.output().expect("the binary runs");
    let run = Run {
        command: format!("sessionlake {text}"),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if output.status.code().is_none() {
        problems.push(format!("`{}` was killed by a signal ({:?})", run.command, output.status));
    } else if !matches!(run.code, 0 | 1) {
        problems.push(format!("`{}` exited {} (101 is a Rust panic)", run.command, run.code));
    }
    if run.stderr.contains("panicked") {
        problems.push(format!("`{}` panicked: {}", run.command, run.stderr.trim_end()));
    }
    run
}

fn os(text: &str) -> &OsStr {
    OsStr::new(text)
}

/// Runs one SQL statement and returns its rows.
fn sql(lake: &Path, statement: &str, problems: &mut Vec<String>) -> Result<Vec<Value>, String> {
    let run = sessionlake(lake, &[os("sql"), os(statement)], problems);
    match run.json()? {
        Value::Array(rows) => Ok(rows),
        other => Err(format!("`sql {statement}` did not print a JSON array: {other}")),
    }
}

fn text_of(row: &Value, column: &str) -> Option<String> {
    row.get(column).and_then(Value::as_str).map(str::to_string)
}

fn number_of(row: &Value, column: &str) -> Option<i64> {
    row.get(column).and_then(|value| value.as_i64().or_else(|| value.as_str().and_then(|text| text.parse().ok())))
}

/// `(raw rows, rejected rows per reason)` as the tables hold them.
fn table_counts(lake: &Path, problems: &mut Vec<String>) -> Result<(u64, BTreeMap<String, u64>), String> {
    let rows = sql(lake, "SELECT COUNT(*) AS n FROM r_session_events", problems)?;
    let raw_rows = rows.first().and_then(|row| number_of(row, "n")).ok_or("no COUNT(*) of r_session_events")? as u64;
    let rows = sql(lake, "SELECT reason, COUNT(*) AS n FROM r_session_events_rejected GROUP BY reason", problems)?;
    let by_reason = rows
        .iter()
        .map(|row| Ok((text_of(row, "reason").ok_or("no reason")?, number_of(row, "n").ok_or("no count")? as u64)))
        .collect::<Result<BTreeMap<_, _>, String>>()?;
    Ok((raw_rows, by_reason))
}

fn decode_hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex")).collect()
}

/// Lands `file` and checks the outcome of each step against `case`;
/// returns what disagrees.
fn check_case(case: &Case, follow_up: &Case) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let lake = dir.path().join("lake");
    let mut problems = Vec::new();
    let outcome = match &case.expect {
        Expect::Counts { raw_rows, rejected, duplicates } => {
            check_success(case, &lake, *raw_rows, rejected, *duplicates, &mut problems)
        }
        Expect::Error { error, stage: Stage::Ingest } => check_refused(case, &lake, error, follow_up, &mut problems),
        Expect::Quarantined { quarantined } => check_quarantined(case, &lake, quarantined, follow_up, &mut problems),
    };
    if let Err(problem) = outcome {
        problems.push(problem);
    }
    let (outcome, lines) = match &case.expect {
        Expect::Counts { .. } => ("raw or rejected", case.lines),
        Expect::Error { stage: Stage::Ingest, .. } => ("one error at ingest", 0),
        Expect::Quarantined { .. } => ("quarantined at raw", 0),
    };
    let panics =
        problems.iter().filter(|problem| problem.contains("panicked") || problem.contains("exited 101")).count();
    report::record(
        "hostile_file",
        json!({"file": case.file, "outcome": outcome, "lines": lines, "panics": panics, "equal": problems.is_empty()}),
    );
    problems.into_iter().map(|problem| format!("{} ({}): {problem}", case.file, case.what)).collect()
}

fn ingest(lake: &Path, file: &str, problems: &mut Vec<String>) -> Run {
    let path = corpus_dir().join(file);
    sessionlake(lake, &[os("ingest"), os("--source"), path.as_os_str()], problems)
}

fn check_success(
    case: &Case,
    lake: &Path,
    raw_rows: u64,
    rejected: &BTreeMap<String, u64>,
    duplicates: u64,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    let landed = ingest(lake, &case.file, problems).json()?;
    if landed["already_landed"] != Value::Bool(false) {
        problems.push(format!("ingest report: {landed}"));
    }

    let report = sessionlake(lake, &[os("raw")], problems).json()?;
    let rejected_total: u64 = rejected.values().sum();
    let field = |name: &str| report[name].as_u64();
    let expected = [
        ("files_processed", 1),
        ("lines", case.lines),
        ("inserted", raw_rows),
        ("rejected", rejected_total),
        ("duplicates", duplicates),
    ];
    for (name, want) in expected {
        if field(name) != Some(want) {
            problems.push(format!("raw report {name}: {:?}, expected {want}; report: {report}", field(name)));
        }
    }
    let by_reason: BTreeMap<String, u64> =
        serde_json::from_value(report["rejected_by_reason"].clone()).map_err(|error| format!("{error}: {report}"))?;
    if &by_reason != rejected {
        problems.push(format!("raw report rejected_by_reason: {by_reason:?}, expected {rejected:?}"));
    }
    let (inserted, rejected_rows, duplicate_rows, lines) =
        (field("inserted"), field("rejected"), field("duplicates"), field("lines"));
    if let (Some(inserted), Some(rejected_rows), Some(duplicate_rows), Some(lines)) =
        (inserted, rejected_rows, duplicate_rows, lines)
        && inserted + rejected_rows + duplicate_rows != lines
    {
        problems.push(format!("raw report: inserted + rejected + duplicates != lines: {report}"));
    }

    // A processed file is done: a second run neither reads nor writes it.
    let again = sessionlake(lake, &[os("raw")], problems).json()?;
    let again_field = |name: &str| again[name].as_u64();
    let idle = [("files_processed", 0), ("files_skipped", 1), ("lines", 0), ("inserted", 0), ("rejected", 0)];
    if idle.iter().any(|&(name, want)| again_field(name) != Some(want)) {
        problems.push(format!("a second raw run is not idle: {again}"));
    }

    let (table_rows, table_reasons) = table_counts(lake, problems)?;
    if table_rows != raw_rows {
        problems.push(format!("r_session_events holds {table_rows} rows, expected {raw_rows}"));
    }
    if &table_reasons != rejected {
        problems.push(format!("r_session_events_rejected by reason: {table_reasons:?}, expected {rejected:?}"));
    }
    check_raw_rows(case, lake, problems)?;
    check_rejected_rows(case, lake, problems)
}

fn check_raw_rows(case: &Case, lake: &Path, problems: &mut Vec<String>) -> Result<(), String> {
    let statement = "SELECT event, session_id, player_id, country, CAST(ts AS BIGINT) AS ts_micros, \
                     CAST(\"EVENT_DATE\" AS VARCHAR) AS event_date, \"UNIQUE_ID_ROW\" AS unique_id_row \
                     FROM r_session_events";
    let rows = sql(lake, statement, problems)?;
    let mut stored = rows
        .iter()
        .map(|row| {
            Ok(RawRow {
                event_date: text_of(row, "event_date").ok_or("no event_date")?,
                unique_id_row: text_of(row, "unique_id_row").ok_or("no unique_id_row")?,
                event: text_of(row, "event").ok_or("no event")?,
                session_id: text_of(row, "session_id").ok_or("no session_id")?,
                player_id: text_of(row, "player_id").ok_or("no player_id")?,
                country: text_of(row, "country"),
                ts_micros: number_of(row, "ts_micros").ok_or("no ts")?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    stored.sort();
    let mut expected = case.raw.clone();
    expected.sort();
    if stored != expected {
        let missing: Vec<_> = expected.iter().filter(|row| !stored.contains(row)).collect();
        let unexpected: Vec<_> = stored.iter().filter(|row| !expected.contains(row)).collect();
        problems.push(format!("r_session_events rows differ: missing {missing:?}, unexpected {unexpected:?}"));
    }
    Ok(())
}

fn check_rejected_rows(case: &Case, lake: &Path, problems: &mut Vec<String>) -> Result<(), String> {
    // Long lines are compared by length: their bytes would flood the output.
    // (DataFusion has no octet_length of a binary: hex has two digits a byte.)
    let statement = format!(
        "SELECT line_number, reason, source_file, length, \
         CASE WHEN length <= {HEX_LIMIT} THEN encode(raw_bytes, 'hex') END AS hex, \
         CASE WHEN length <= {HEX_LIMIT} THEN encode(raw_line, 'hex') END AS line_hex \
         FROM (SELECT *, octet_length(encode(raw_bytes, 'hex')) / 2 AS length FROM r_session_events_rejected) \
         ORDER BY line_number"
    );
    let rows = sql(lake, &statement, problems)?;
    if rows.len() != case.rejected_lines.len() {
        problems.push(format!("{} rejected rows, expected {}", rows.len(), case.rejected_lines.len()));
    }
    for (row, want) in rows.iter().zip(&case.rejected_lines) {
        let line = number_of(row, "line_number");
        let at = format!("rejected line {}", want.line_number);
        if line != Some(want.line_number as i64) {
            problems.push(format!("{at}: stored as line {line:?}"));
            continue;
        }
        if text_of(row, "reason").as_deref() != Some(want.reason.as_str()) {
            problems.push(format!("{at}: reason {:?}, expected {}", text_of(row, "reason"), want.reason));
        }
        if text_of(row, "source_file").as_deref() != Some(case.file.as_str()) {
            problems.push(format!("{at}: source_file {:?}", text_of(row, "source_file")));
        }
        if number_of(row, "length") != Some(want.length as i64) {
            problems.push(format!(
                "{at}: raw_bytes has {:?} bytes, expected {}",
                number_of(row, "length"),
                want.length
            ));
        }
        let Some(want_hex) = &want.hex else { continue };
        if text_of(row, "hex").as_deref() != Some(want_hex.as_str()) {
            problems.push(format!("{at}: raw_bytes {:?} are not the line's bytes {want_hex}", text_of(row, "hex")));
        }
        // raw_line: the same text when the line is UTF-8, lossy otherwise.
        let want_line = String::from_utf8_lossy(&decode_hex(want_hex)).into_owned();
        let stored_line = text_of(row, "line_hex").map(|hex| decode_hex(&hex));
        if stored_line.as_deref() != Some(want_line.as_bytes()) {
            problems.push(format!("{at}: raw_line {stored_line:?} is not {want_line:?}"));
        }
    }
    Ok(())
}

/// Checks the one-line error of a failed command.
fn check_one_line_error(run: &Run, expected: &str, file: &str, problems: &mut Vec<String>) {
    if run.succeeded() {
        problems
            .push(format!("`{}` succeeded, expected an error containing {expected:?}: {}", run.command, run.stdout));
        return;
    }
    let lines: Vec<&str> = run.stderr.lines().collect();
    let one_line = lines.len() == 1 && lines[0].starts_with("error: ");
    if !one_line || !lines[0].contains(expected) || !lines[0].contains(file) {
        problems.push(format!(
            "`{}`: stderr is not one `error: ` line naming {file} and containing {expected:?}: {:?}",
            run.command, run.stderr
        ));
    }
}

/// A file `ingest` refuses: one error, nothing landed, and a good file
/// landed afterwards is processed.
fn check_refused(
    case: &Case,
    lake: &Path,
    expected: &str,
    follow_up: &Case,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    let landed = ingest(lake, &case.file, problems);
    check_one_line_error(&landed, expected, &case.file, problems);
    // Nothing landed: no file (not even a temp file), no manifest entry.
    let landing = lake.join("landingzone/assignment_data");
    let left: Vec<_> = std::fs::read_dir(&landing)
        .map(|entries| entries.flatten().map(|entry| entry.file_name()).collect())
        .unwrap_or_default();
    if !left.is_empty() {
        problems.push(format!("a refused file left {left:?} in the landing zone"));
    }
    let report = sessionlake(lake, &[os("raw")], problems).json()?;
    if report["lines"].as_u64() != Some(0) || report["files_processed"].as_u64() != Some(0) {
        problems.push(format!("raw after a refused ingest read something: {report}"));
    }
    let (raw_rows, rejected) = table_counts(lake, problems)?;
    if raw_rows != 0 || !rejected.is_empty() {
        problems.push(format!("the tables hold rows of a refused file: {raw_rows} raw, rejected {rejected:?}"));
    }
    ingest(lake, &follow_up.file, problems).json()?;
    sessionlake(lake, &[os("raw")], problems).json()?;
    let (good_rows, good_rejected) = follow_up_counts(follow_up)?;
    check_table_counts(lake, good_rows, &good_rejected, &follow_up.file, problems)
}

/// The raw rows and rejected rows per reason of the (successful) follow-up case.
fn follow_up_counts(follow_up: &Case) -> Result<(u64, BTreeMap<String, u64>), String> {
    let Expect::Counts { raw_rows, rejected, .. } = &follow_up.expect else {
        return Err("the follow-up case must succeed".into());
    };
    Ok((*raw_rows, rejected.clone()))
}

fn check_table_counts(
    lake: &Path,
    raw_rows: u64,
    rejected: &BTreeMap<String, u64>,
    after: &str,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    let (stored_rows, stored_rejected) = table_counts(lake, problems)?;
    if (stored_rows, &stored_rejected) != (raw_rows, rejected) {
        problems.push(format!(
            "after landing {after}: {stored_rows} raw rows and rejected {stored_rejected:?}, expected {raw_rows} and \
             {rejected:?} (a failed file must not hold back the files after it)"
        ));
    }
    Ok(())
}

/// Checks a `raw` run that must succeed with `file` (sha256 `sha256`)
/// quarantined, its reason containing `expected`, and one warning line
/// naming it; returns the report.
fn check_raw_quarantines(
    lake: &Path,
    file: &str,
    sha256: &Value,
    expected: &str,
    problems: &mut Vec<String>,
) -> Result<Value, String> {
    let run = sessionlake(lake, &[os("raw")], problems);
    let report = run.json()?;
    let listed = &report["quarantined"];
    let reason = listed[0]["reason"].as_str().unwrap_or_default();
    let listed_alone = listed.as_array().map(Vec::len) == Some(1)
        && report["files_quarantined"].as_u64() == Some(1)
        && listed[0]["file"].as_str() == Some(file)
        && &listed[0]["sha256"] == sha256
        && reason.contains(expected);
    if !listed_alone {
        problems.push(format!("`{}` does not report {file} quarantined for {expected:?}: {report}", run.command));
    }
    let warnings: Vec<&str> = run.stderr.lines().filter(|line| !line.trim().is_empty()).collect();
    let one_warning = warnings.len() == 1
        && warnings[0].starts_with("warning: ")
        && warnings[0].contains(file)
        && warnings[0].contains(expected);
    if !one_warning {
        problems.push(format!("`{}`: stderr is not one `warning: ` line naming {file}: {:?}", run.command, run.stderr));
    }
    Ok(report)
}

/// A landed file that does not decompress: quarantined, reported on every
/// run without being read, recorded by one rejected row; the files after it
/// are processed; dropped, it is neither read nor reported again.
fn check_quarantined(
    case: &Case,
    lake: &Path,
    expected: &str,
    follow_up: &Case,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    let sha256 = ingest(lake, &case.file, problems).json()?["sha256"].clone();
    let first = check_raw_quarantines(lake, &case.file, &sha256, expected, problems)?;
    let nothing_read = [("files_processed", 0), ("lines", 0), ("inserted", 0), ("rejected", 0)];
    if nothing_read.iter().any(|&(name, want)| first[name].as_u64() != Some(want)) {
        problems.push(format!("raw of a file that does not decompress wrote or counted lines: {first}"));
    }
    let quarantine_row = BTreeMap::from([(CORRUPT_FILE.to_string(), 1)]);
    check_table_counts(lake, 0, &quarantine_row, &case.file, problems)?;
    let statement = format!(
        "SELECT source_file, line_number, raw_line, encode(raw_bytes, 'hex') AS hex, message \
         FROM r_session_events_rejected WHERE reason = '{CORRUPT_FILE}'"
    );
    let rows = sql(lake, &statement, problems)?;
    let row = rows.first().cloned().unwrap_or_default();
    let recorded = text_of(&row, "source_file").as_deref() == Some(case.file.as_str())
        && number_of(&row, "line_number") == Some(0)
        && text_of(&row, "raw_line").as_deref() == Some("")
        && text_of(&row, "hex").as_deref() == Some("")
        && Some(&row["message"]) == first["quarantined"][0].get("reason");
    if !recorded {
        problems.push(format!("the {CORRUPT_FILE} row is not the quarantine's record: {rows:?}"));
    }

    // A good file landed afterwards is processed; the quarantined one is
    // still reported, and still not read.
    ingest(lake, &follow_up.file, problems).json()?;
    let after = check_raw_quarantines(lake, &case.file, &sha256, expected, problems)?;
    if after["files_processed"].as_u64() != Some(1) || after["lines"].as_u64() != Some(follow_up.lines) {
        problems.push(format!("raw after landing {} did not read exactly it: {after}", follow_up.file));
    }
    let (good_rows, mut good_rejected) = follow_up_counts(follow_up)?;
    *good_rejected.entry(CORRUPT_FILE.to_string()).or_insert(0) += 1;
    check_table_counts(lake, good_rows, &good_rejected, &follow_up.file, problems)?;

    // Dropped: neither read nor reported again; its record stays.
    let dropped = sessionlake(lake, &[os("quarantine"), os("drop"), os(&case.file)], problems).json()?;
    if dropped["file"].as_str() != Some(case.file.as_str()) {
        problems.push(format!("quarantine drop: {dropped}"));
    }
    let run = sessionlake(lake, &[os("raw")], problems);
    let last = run.json()?;
    let idle = [("files_processed", 0), ("files_skipped", 2), ("files_quarantined", 0), ("lines", 0)];
    if idle.iter().any(|&(name, want)| last[name].as_u64() != Some(want)) || !run.stderr.trim().is_empty() {
        problems.push(format!("raw after the drop is not idle and quiet: {last}; stderr {:?}", run.stderr));
    }
    check_table_counts(lake, good_rows, &good_rejected, &follow_up.file, problems)
}

#[test]
fn hostile_files_end_in_raw_rejected_quarantine_or_one_clear_error() {
    let started = Instant::now();
    let corpus = load_corpus();
    let follow_up = corpus.cases.iter().find(|case| case.file == corpus.follow_up).expect("the follow-up case");
    for case in &corpus.cases {
        assert!(
            corpus_dir().join(&case.file).is_file(),
            "{} is listed but missing: run tests/corpus/make.py",
            case.file
        );
    }
    let next = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::new());
    let timings = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_CASES {
            scope.spawn(|| {
                while let Some(case) = corpus.cases.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let case_started = Instant::now();
                    let found = check_case(case, follow_up);
                    timings.lock().unwrap().push((case.file.clone(), case_started.elapsed()));
                    problems.lock().unwrap().extend(found);
                }
            });
        }
    });
    let mut timings = timings.into_inner().unwrap();
    timings.sort_by_key(|(_, elapsed)| std::cmp::Reverse(*elapsed));
    let slowest: Vec<String> =
        timings.iter().take(5).map(|(file, elapsed)| format!("{file} {:.1}s", elapsed.as_secs_f64())).collect();
    println!(
        "hostile files: {} cases in {:.1}s ({PARALLEL_CASES} at a time); slowest: {}",
        corpus.cases.len(),
        started.elapsed().as_secs_f64(),
        slowest.join(", ")
    );
    let problems = problems.into_inner().unwrap();
    assert!(
        problems.is_empty(),
        "{} disagreements with tests/corpus/cases.json:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A file whose every event is already in the raw table (the same events,
/// other bytes) commits no data; it must still be marked done, so that the
/// next run neither reads it again nor reports its lines again.
#[test]
fn a_file_of_events_already_in_the_table_is_done_after_one_run() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let lake = dir.path().join("lake");
    let mut problems = Vec::new();
    ingest(&lake, "01-good.jsonl.bz2", &mut problems).json().expect("01-good lands");
    let first = sessionlake(&lake, &[os("raw")], &mut problems).json().expect("raw runs");
    assert_eq!(first["inserted"].as_u64(), Some(3), "{first}");

    ingest(&lake, "27-good-again.jsonl.bz2", &mut problems).json().expect("27-good-again lands");
    let second = sessionlake(&lake, &[os("raw")], &mut problems).json().expect("raw runs");
    let counts = |report: &Value| {
        ["files_processed", "files_skipped", "lines", "inserted", "duplicates"].map(|name| report[name].as_u64())
    };
    assert_eq!(counts(&second), [Some(1), Some(1), Some(3), Some(0), Some(3)], "{second}");
    let third = sessionlake(&lake, &[os("raw")], &mut problems).json().expect("raw runs");
    assert_eq!(counts(&third), [Some(0), Some(2), Some(0), Some(0), Some(0)], "a third run reads nothing: {third}");
    assert!(problems.is_empty(), "{problems:#?}");
}
