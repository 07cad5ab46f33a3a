//! The `sessionlake` binary as a user runs it: determinism of `generate`,
//! the whole chain's JSON reports against the truth file, failures that
//! are one line on stderr with a non-zero exit, the configuration's rules
//! (every flag has a variable, bad values are refused at parse time), and
//! long-running commands (`sessions --follow`, `up`, streamed `sql`).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The configuration type itself, to walk its clap command tree.
#[allow(dead_code)]
#[path = "../../src/config.rs"]
mod config;

/// The binary on `lake` with `--json`, not run yet.
fn command(lake: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessionlake"));
    // The priority tests below expect the default --background-nice.
    command
        .arg("--lake")
        .arg(lake)
        .arg("--json")
        .args(args)
        .env_remove("SESSIONLAKE_DEBUG")
        .env_remove("SESSIONLAKE_BACKGROUND_NICE");
    command
}

fn sessionlake(lake: &Path, args: &[&str]) -> Output {
    command(lake, args).output().expect("the binary runs")
}

/// Runs `command` to its end, killing it after `patience` (a command that
/// should have refused its arguments must not hang the suite).
fn output_within(mut command: Command, patience: Duration) -> Output {
    let mut running = Background::spawn(&mut command);
    let started = Instant::now();
    while running.child.as_mut().unwrap().try_wait().unwrap().is_none() {
        if started.elapsed() > patience {
            panic!("still running after {patience:?}: {command:?}\nstderr: {}", running.stderr());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = running.child.take().unwrap().wait().unwrap();
    Output { status, stdout: running.stdout().into_bytes(), stderr: running.stderr().into_bytes() }
}

/// A `sessionlake` running in the background, its stdout and stderr going
/// to files; killed when dropped.
struct Background {
    child: Option<Child>,
    stdout: tempfile::NamedTempFile,
    stderr: tempfile::NamedTempFile,
}

impl Background {
    fn spawn(command: &mut Command) -> Self {
        let (stdout, stderr) = (tempfile::NamedTempFile::new().unwrap(), tempfile::NamedTempFile::new().unwrap());
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout.reopen().unwrap())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .expect("the binary starts");
        Self { child: Some(child), stdout, stderr }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.stdout.path()).unwrap()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap()
    }

    /// Waits up to `patience` for `done`, failing if the process ends first.
    fn wait_for(&mut self, what: &str, patience: Duration, done: impl Fn(&Self) -> bool) {
        let started = Instant::now();
        while !done(self) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ended ({status}) before {what}\nstdout: {}\nstderr: {}", self.stdout(), self.stderr());
            }
            assert!(started.elapsed() < patience, "no {what} in {patience:?}\nstderr: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit (60 s at most).
    fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("did not stop within 60 s of SIGTERM\nstderr: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn report(output: &Output) -> Value {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

#[test]
fn generate_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let path = |name: &str| dir.path().join(name).display().to_string();
    for name in ["a.jsonl.bz2", "b.jsonl.bz2"] {
        report(&sessionlake(
            &lake,
            &["generate", "--out", &path(name), "--sessions", "500", "--seed", "9", "--anomaly-rate", "0.05"],
        ));
    }
    report(&sessionlake(&lake, &["generate", "--out", &path("c.jsonl.bz2"), "--sessions", "500", "--seed", "10"]));
    let bytes = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(bytes("a.jsonl.bz2"), bytes("b.jsonl.bz2"));
    assert_ne!(bytes("a.jsonl.bz2"), bytes("c.jsonl.bz2"));
}

#[test]
fn chain_reports_match_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("events.jsonl.bz2").display().to_string();
    let truth_path = dir.path().join("truth.json").display().to_string();
    report(&sessionlake(
        &lake,
        &[
            "generate",
            "--out",
            &file,
            "--sessions",
            "800",
            "--seed",
            "4",
            "--anomaly-rate",
            "0.05",
            "--truth",
            &truth_path,
        ],
    ));
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(&truth_path).unwrap()).unwrap();

    let landed = report(&sessionlake(&lake, &["ingest", "--source", &file]));
    assert_eq!(landed["already_landed"], false);
    let raw = report(&sessionlake(&lake, &["raw"]));
    assert_eq!(raw["lines"], truth["lines"]);
    assert_eq!(raw["inserted"], truth["raw_rows"]);
    assert_eq!(raw["rejected"], truth["rejected_rows"]);
    assert_eq!(raw["duplicates"], truth["duplicate_lines"]);
    assert_eq!(raw["rejected_by_reason"], truth["rejected_by_reason"]);
    let sessions = report(&sessionlake(&lake, &["sessions"]));
    assert_eq!(sessions["inserted"], truth["sessions"]);
    assert_eq!(sessions["raw_rows"], truth["raw_rows"]);

    // The five questions against the truth, and the chart's file.
    let chart = dir.path().join("charts/by_country.png");
    let insights = report(&sessionlake(&lake, &["insights", "--chart", &chart.display().to_string()]));
    let mut by_country: Vec<(String, u64)> = truth["completed_by_country"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(country, count)| (country.clone(), count.as_u64().unwrap()))
        .collect();
    by_country.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    by_country.truncate(10);
    let expected = serde_json::json!({
        "sessions": truth["sessions"],
        "completed_by_country_top10": by_country,
        "completed_by_player_top10": truth["completed_by_player_top10"],
        "top_start_country_2016": truth["top_start_country_2016"],
        "chart": chart.display().to_string(),
    });
    assert_eq!(insights, expected);
    assert_eq!(by_country.len(), 10, "enough countries for ten bars");
    let png = std::fs::read(&chart).expect("the chart is written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
    assert_eq!(&png[12..16], b"IHDR");
    let dimension = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    let (width, height) = (dimension(16), dimension(20));
    assert!((800..=2000).contains(&width) && (400..=1200).contains(&height), "{width}x{height}");
    assert!(png.len() > 10_000 && png.len() < 2_000_000, "a drawn chart, not an empty image: {} bytes", png.len());

    let again = report(&sessionlake(&lake, &["raw"]));
    assert_eq!((again["inserted"].as_u64(), again["files_skipped"].as_u64()), (Some(0), Some(1)));

    // Ad-hoc SQL: one COUNT(*) per table equals the truth; time travel to
    // the raw table's first version (created empty) counts nothing.
    let count = |table: &str, extra: &[&str]| {
        let statement = format!("SELECT COUNT(*) AS n FROM {table}");
        let mut args = vec!["sql", statement.as_str()];
        args.extend_from_slice(extra);
        report(&sessionlake(&lake, &args))[0]["n"].clone()
    };
    assert_eq!(count("r_session_events", &[]), truth["raw_rows"]);
    assert_eq!(count("r_session_events_rejected", &[]), truth["rejected_rows"]);
    assert_eq!(count("uc_delta_session_events", &[]), truth["sessions"]);
    assert_eq!(count("r_session_events", &["--table", "r_session_events", "--version", "0"]), 0);
    let table = Command::new(env!("CARGO_BIN_EXE_sessionlake"))
        .arg("--lake")
        .arg(&lake)
        .args(["sql", "SELECT COUNT(*) AS n FROM uc_delta_session_events"])
        .env_remove("SESSIONLAKE_JSON")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains(&format!("| {}", truth["sessions"])), "an aligned table");
    assert_one_line_failure(&sessionlake(&lake, &["sql", "SELECT * FROM nowhere"]), "nowhere");
    assert_one_line_failure(
        &sessionlake(&lake, &["sql", "SELECT 1", "--table", "r_session_events", "--version", "999"]),
        "no version 999",
    );
}

/// A crash between two chunks of one file (the process aborts right after
/// a chunk's MERGE commit), then a run with other chunk limits: it resumes
/// after the merged lines and the tables end exactly as the truth says.
#[test]
fn a_crash_between_chunks_resumes_after_the_merged_lines_with_other_limits() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("events.jsonl.bz2").display().to_string();
    let truth_path = dir.path().join("truth.json").display().to_string();
    report(&sessionlake(
        &lake,
        &[
            "generate",
            "--out",
            &file,
            "--sessions",
            "700",
            "--seed",
            "9",
            "--anomaly-rate",
            "0.05",
            "--truth",
            &truth_path,
        ],
    ));
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(&truth_path).unwrap()).unwrap();
    report(&sessionlake(&lake, &["ingest", "--source", &file]));

    if !cfg!(feature = "crash-points") {
        panic!(
            "the binary under test has no crash points: run the tests with --features crash-points (make test does)"
        );
    }
    let crashed = command(&lake, &["raw"])
        .env("SESSIONLAKE_RAW_CHUNK_LINES", "300")
        .env("SESSIONLAKE_CRASH_AT", "raw.after_chunk_merge:2")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the crash point aborts the run");
    assert!(String::from_utf8_lossy(&crashed.stderr).contains("crash point raw.after_chunk_merge #2"));
    let count = |table: &str| {
        report(&sessionlake(&lake, &["sql", &format!("SELECT COUNT(*) AS n FROM {table}")]))[0]["n"].clone()
    };
    let merged_before = count("r_session_events").as_u64().unwrap();
    assert!(merged_before > 0 && merged_before < truth["raw_rows"].as_u64().unwrap());

    let resumed = report(&command(&lake, &["raw"]).env("SESSIONLAKE_RAW_CHUNK_LINES", "451").output().unwrap());
    assert_eq!(resumed["lines_resumed"], 600, "two chunks of 300 lines were merged: {resumed}");
    assert_eq!(resumed["lines"], truth["lines"].as_u64().unwrap() - 600);
    assert_eq!(resumed["inserted"].as_u64().unwrap() + merged_before, truth["raw_rows"].as_u64().unwrap());
    assert_eq!(count("r_session_events"), truth["raw_rows"]);
    assert_eq!(count("r_session_events_rejected"), truth["rejected_rows"], "no rejected line lost or written twice");
    let again = report(&sessionlake(&lake, &["raw"]));
    assert_eq!((again["files_skipped"].as_u64(), again["lines"].as_u64()), (Some(1), Some(0)), "{again}");
}

/// The largest resident set (VmRSS) of a running child, sampled until it exits.
fn peak_rss_mib(child: &mut Child) -> u64 {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    while child.try_wait().unwrap().is_none() {
        let status = std::fs::read_to_string(&status_path).unwrap_or_default();
        let rss = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        peak_kib = peak_kib.max(rss.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5));
    }
    peak_kib / 1024
}

/// A landed file of 400 MiB without a newline: `raw` rejects it as one
/// `line_too_long` line with its first MiB kept, and never buffers the line
/// (memory stays far under the file's size).
#[test]
fn a_file_without_a_newline_stays_within_the_memory_bound() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("no-newline.jsonl.bz2");
    // One MiB of `x` compressed once, as 400 concatenated bzip2 streams
    // (decoded as one stream of bytes, like a pbzip2 file).
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    encoder.write_all(&vec![b'x'; 1 << 20]).unwrap();
    let stream = encoder.finish().unwrap();
    std::fs::write(&file, stream.repeat(400)).unwrap();
    report(&sessionlake(&lake, &["ingest", "--source", &file.display().to_string()]));

    let mut child = command(&lake, &["raw"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let peak = peak_rss_mib(&mut child);
    let raw = report(&child.wait_with_output().unwrap());
    assert_eq!((raw["lines"].as_u64(), raw["rejected"].as_u64()), (Some(1), Some(1)), "{raw}");
    assert_eq!(raw["rejected_by_reason"], serde_json::json!({ "line_too_long": 1 }));
    assert!(peak < 250, "raw peaked at {peak} MiB for a 400 MiB line");
    let kept = report(&sessionlake(
        &lake,
        &["sql", "SELECT octet_length(encode(raw_bytes, 'hex')) / 2 AS n FROM r_session_events_rejected"],
    ));
    assert_eq!(kept[0]["n"], 1 << 20, "the first MiB is kept");
    eprintln!("raw peaked at {peak} MiB");
}

fn assert_one_line_failure(output: &Output, needle: &str) {
    assert!(!output.status.success(), "must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|line| !line.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "mentions {needle}: {stderr}");
}

#[test]
fn failures_are_one_line_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    assert_one_line_failure(
        &sessionlake(&lake, &["ingest", "--source", &format!("http://{closed}/data.bz2")]),
        "refused",
    );

    let text = dir.path().join("plain.jsonl");
    std::fs::write(&text, "{}\n").unwrap();
    assert_one_line_failure(
        &sessionlake(&lake, &["ingest", "--source", &text.display().to_string()]),
        "not a bzip2 file",
    );

    let out = dir.path().join("x.bz2").display().to_string();
    assert_one_line_failure(&sessionlake(&lake, &["generate", "--out", &out, "--anomaly-rate", "2"]), "anomaly-rate");
}

/// The warning lines a command printed on stderr.
fn warnings(output: &Output) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr.lines().filter(|line| line.starts_with("warning: ")).map(str::to_string).collect()
}

/// Found in review (issue 12): one truncated landed file made every later
/// `raw` exit non-zero for ever. It is quarantined instead: `raw` processes
/// the other files, succeeds, and on every run reports the file with its
/// reason (and one warning line), without reading it; `quarantine retry`
/// has the next `raw` read it again, `quarantine drop` ends it for good.
#[test]
fn a_truncated_landed_file_is_quarantined_until_retried_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("events.jsonl.bz2");
    let truth_path = dir.path().join("truth.json");
    report(&sessionlake(
        &lake,
        &[
            "generate",
            "--out",
            &file.display().to_string(),
            "--sessions",
            "500",
            "--seed",
            "2",
            "--truth",
            &truth_path.display().to_string(),
        ],
    ));
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(&truth_path).unwrap()).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.jsonl.bz2");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let sha256 = report(&sessionlake(&lake, &["ingest", "--source", &cut.display().to_string()]))["sha256"].clone();
    report(&sessionlake(&lake, &["ingest", "--source", &file.display().to_string()]));

    let first = sessionlake(&lake, &["raw"]);
    let first_report = report(&first);
    assert_eq!(first_report["files_processed"], 1, "the file landed after it is processed: {first_report}");
    assert_eq!(first_report["inserted"], truth["raw_rows"]);
    assert_eq!(first_report["files_quarantined"], 1, "{first_report}");
    let quarantined = first_report["quarantined"][0].clone();
    assert_eq!(quarantined["file"], "cut.jsonl.bz2");
    assert_eq!(quarantined["sha256"], sha256);
    let reason = quarantined["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("truncated or corrupt"), "{quarantined}");
    let warning = warnings(&first);
    assert_eq!(warning.len(), 1, "one warning line per quarantined file: {warning:?}");
    assert!(warning[0].contains("cut.jsonl.bz2") && warning[0].contains(&reason), "{warning:?}");

    let second = sessionlake(&lake, &["raw"]);
    let second_report = report(&second);
    assert_eq!(second_report["files_processed"], 0);
    assert_eq!(second_report["lines"], 0, "a quarantined file is not read");
    assert_eq!(second_report["quarantined"], first_report["quarantined"], "listed on every run");
    assert_eq!(warnings(&second), warning);

    let listed = report(&sessionlake(&lake, &["quarantine", "list"]));
    assert_eq!(listed["files_quarantined"], 1);
    assert_eq!(listed["quarantined"], first_report["quarantined"]);
    let table = Command::new(env!("CARGO_BIN_EXE_sessionlake"))
        .arg("--lake")
        .arg(&lake)
        .args(["quarantine", "list"])
        .env_remove("SESSIONLAKE_JSON")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("cut.jsonl.bz2") && text.contains(&reason), "{text}");

    let retried = report(&sessionlake(&lake, &["quarantine", "retry", "cut.jsonl.bz2"]));
    assert_eq!(
        (&retried["action"], &retried["file"], &retried["reason"]),
        (&"retry".into(), &"cut.jsonl.bz2".into(), &reason.clone().into())
    );
    assert_one_line_failure(&sessionlake(&lake, &["quarantine", "retry", "cut.jsonl.bz2"]), "not quarantined");
    assert_eq!(report(&sessionlake(&lake, &["quarantine", "list"]))["files_quarantined"], 0);
    let third = report(&sessionlake(&lake, &["raw"]));
    assert_eq!(third["files_quarantined"], 1, "read again, still truncated, quarantined again: {third}");

    let mut drop = command(&lake, &["quarantine", "drop"]);
    drop.env("SESSIONLAKE_QUARANTINE_FILE", sha256.as_str().unwrap());
    let dropped = report(&drop.output().unwrap());
    assert_eq!((&dropped["action"], &dropped["file"]), (&"drop".into(), &"cut.jsonl.bz2".into()));
    let fourth = sessionlake(&lake, &["raw"]);
    let fourth_report = report(&fourth);
    assert_eq!(fourth_report["files_quarantined"], 0, "{fourth_report}");
    assert_eq!(fourth_report["files_skipped"], 2, "{fourth_report}");
    assert!(warnings(&fourth).is_empty(), "{:?}", warnings(&fourth));
    assert_one_line_failure(&sessionlake(&lake, &["quarantine", "drop", "nowhere.jsonl.bz2"]), "no landed file");

    let count = |statement: &str| report(&sessionlake(&lake, &["sql", statement]))[0]["n"].clone();
    assert_eq!(count("SELECT COUNT(*) AS n FROM r_session_events"), truth["raw_rows"], "nothing of the cut file");
    let corrupt_rows = "SELECT COUNT(*) AS n FROM r_session_events_rejected \
                        WHERE reason = 'corrupt_file' AND source_file = 'cut.jsonl.bz2' AND line_number = 0";
    assert_eq!(count(corrupt_rows), 2, "one row per quarantine, kept after the drop");
}

/// Found in review: a typo in `--log` silently became `warn`.
#[test]
fn a_bad_log_filter_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.jsonl.bz2").display().to_string();
    let output = sessionlake(&dir.path().join("lake"), &["--log", "sessionlake=loud", "generate", "--out", &out]);
    assert_one_line_failure(&output, "--log");
    assert!(String::from_utf8_lossy(&output.stderr).contains("sessionlake=loud"));
    assert!(!Path::new(&out).exists(), "nothing ran");
}

/// Found in review: `Duration::from_secs_f64` panics on an infinite, NaN or
/// too-large number of seconds, and a negative one was silently clamped.
/// Every seconds flag (and its variable) is checked when parsed.
#[test]
fn seconds_flags_refuse_infinite_nan_negative_and_huge_values() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let seconds_flags: [(&[&str], &str, &str); 11] = [
        (&["sessions", "--follow"], "--poll-seconds", "SESSIONLAKE_POLL_SECONDS"),
        (&["serve", "--follow"], "--poll-seconds", "SESSIONLAKE_POLL_SECONDS"),
        (&["up"], "--poll-seconds", "SESSIONLAKE_POLL_SECONDS"),
        (&["api"], "--request-timeout-seconds", "SESSIONLAKE_API_REQUEST_TIMEOUT_SECONDS"),
        (&["api"], "--read-timeout-seconds", "SESSIONLAKE_API_READ_TIMEOUT_SECONDS"),
        (&["api"], "--shutdown-grace-seconds", "SESSIONLAKE_API_SHUTDOWN_GRACE_SECONDS"),
        (&["ingest"], "--download-idle-timeout-seconds", "SESSIONLAKE_DOWNLOAD_IDLE_TIMEOUT_SECONDS"),
        (&["run"], "--download-idle-timeout-seconds", "SESSIONLAKE_DOWNLOAD_IDLE_TIMEOUT_SECONDS"),
        (&["maintain"], "--retention-hours", "SESSIONLAKE_MAINTAIN_RETENTION_HOURS"),
        (&["maintain"], "--log-retention-hours", "SESSIONLAKE_MAINTAIN_LOG_RETENTION_HOURS"),
        (&["maintain"], "--serve-progress-wait-seconds", "SESSIONLAKE_MAINTAIN_SERVE_PROGRESS_WAIT_SECONDS"),
    ];
    for (command_args, flag, variable) in seconds_flags {
        for bad in ["inf", "NaN", "-1", "1e300", "soon"] {
            let mut by_flag = command(&lake, command_args);
            by_flag.arg(format!("{flag}={bad}")).env_remove(variable);
            let mut by_variable = command(&lake, command_args);
            by_variable.env(variable, bad);
            for (how, run) in [("flag", by_flag), ("variable", by_variable)] {
                let output = output_within(run, Duration::from_secs(30));
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert_eq!(output.status.code(), Some(2), "{command_args:?} {flag} {bad} by {how}: {stderr}");
                assert!(stderr.contains(flag) && stderr.contains(bad), "{flag} {bad} by {how}: {stderr}");
                assert!(!stderr.contains("panicked"), "{stderr}");
            }
        }
    }
}

/// The README promises that every flag reads a `SESSIONLAKE_*` variable;
/// `sql --table/--version` did not. Walks every command of the real
/// configuration so a new flag without one fails here.
#[test]
fn every_argument_reads_a_sessionlake_variable() {
    use clap::{ArgAction, CommandFactory};

    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>, checked: &mut usize) {
        for argument in command.get_arguments() {
            if matches!(
                argument.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            ) {
                continue;
            }
            *checked += 1;
            let env = argument.get_env().and_then(|name| name.to_str()).unwrap_or_default();
            if !env.starts_with("SESSIONLAKE_") {
                missing.push(format!("{path} {}", argument.get_id()));
            }
        }
        for sub in command.get_subcommands().filter(|sub| sub.get_name() != "help") {
            walk(sub, &format!("{path} {}", sub.get_name()), missing, checked);
        }
    }

    let mut root = config::Config::command();
    root.build();
    let (mut missing, mut checked) = (Vec::new(), 0);
    walk(&root, "sessionlake", &mut missing, &mut checked);
    assert!(missing.is_empty(), "arguments without a SESSIONLAKE_* variable: {missing:?}");
    assert!(checked > 100, "the walk saw every command's arguments ({checked})");
}

/// Found in review: `sql` collected the whole result before printing, so
/// `SELECT *` of a big table took all of it into memory. Rows of a query
/// that never ends must come out while it runs (the child's address space
/// is capped so that collecting fails fast instead of eating the machine).
#[test]
fn sql_csv_streams_rows_while_the_query_runs() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake").display().to_string();
    let script = format!(
        "ulimit -v 4000000 && exec \"$0\" --lake '{lake}' sql --format csv \
         'SELECT value FROM generate_series(1, 1000000000000000)'"
    );
    let mut child = Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_sessionlake")])
        .env_remove("SESSIONLAKE_JSON")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 1 << 16];
    let wanted_lines = 200_000;
    while received.iter().filter(|&&byte| byte == b'\n').count() < wanted_lines {
        let read = stdout.read(&mut buffer).unwrap();
        if read == 0 {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("the output ended after {} bytes; stderr: {stderr}", received.len());
        }
        received.extend_from_slice(&buffer[..read]);
    }
    assert!(child.try_wait().unwrap().is_none(), "the query is still running");
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8(received).unwrap();
    let lines: Vec<&str> = text.lines().take(4).collect();
    assert_eq!(lines, ["value", "1", "2", "3"], "a header once, then the rows in order");
}

/// Found in review: one failed pass ended `--follow` (and in `up` took the
/// API down with it). A pass that fails is logged with its cause and
/// retried with backoff; the follower heals once the cause is gone.
#[test]
fn a_failed_follow_pass_is_logged_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("events.jsonl.bz2").display().to_string();
    let truth_path = dir.path().join("truth.json").display().to_string();
    report(&sessionlake(
        &lake,
        &["generate", "--out", &file, "--sessions", "300", "--seed", "5", "--truth", &truth_path],
    ));
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(&truth_path).unwrap()).unwrap();
    report(&sessionlake(&lake, &["ingest", "--source", &file]));
    report(&sessionlake(&lake, &["raw"]));

    // A file where the gold zone's folder must go: every pass fails to create the table.
    let blocker = lake.join("use_case");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let mut follow = command(&lake, &["sessions", "--follow", "--poll-seconds", "0.05"]);
    follow.env("SESSIONLAKE_LOG", "warn").env_remove("SESSIONLAKE_FOLLOW");
    let mut follower = Background::spawn(&mut follow);
    follower.wait_for("a second failed pass", Duration::from_secs(60), |follower| {
        follower.stderr().matches("pass failed").count() >= 2
    });
    let background = (BACKGROUND_NICE.max(own_nice()), SCHED_BATCH);
    let threads = thread_priorities(follower.child.as_ref().unwrap().id());
    assert!(
        !threads.is_empty() && threads.iter().all(|(_, nice, policy)| (*nice, *policy) == background),
        "a follower's threads (name, nice, policy): {threads:?}"
    );
    std::fs::remove_file(&blocker).unwrap();
    follower.wait_for("a sessions report once healed", Duration::from_secs(60), |follower| {
        follower.stdout().contains("\"inserted\"")
    });
    let stdout = follower.stdout();
    let stderr = follower.stderr();
    let status = follower.terminate();
    assert!(status.success(), "stops cleanly on SIGTERM: {status}\n{stderr}");

    let warning = stderr.lines().find(|line| line.contains("pass failed")).unwrap();
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("while folding raw versions") && warning.contains("use_case"),
        "the cause chain: {warning}"
    );
    assert!(warning.contains("retry_in="), "says when it retries: {warning}");
    let healed: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(healed["inserted"], truth["sessions"]);
}

/// Found in review: with API keys, `up` printed curl examples that read
/// `$SESSIONLAKE_API_KEY`, a variable nobody sets (the keys are in
/// `SESSIONLAKE_API_KEYS`, comma-separated): every example answered 401.
/// The examples, run by a shell as printed, answer 200.
#[test]
fn up_prints_curl_examples_that_work_with_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("events.jsonl.bz2").display().to_string();
    report(&sessionlake(&lake, &["generate", "--out", &file, "--sessions", "500", "--seed", "6"]));
    let nodes = std::env::var("SESSIONLAKE_CASSANDRA_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into());
    let keyspace = DroppedKeyspace { nodes: nodes.clone(), name: format!("t_cli_up_keys_{}", std::process::id()) };
    let keyspace = keyspace.name.as_str();
    let keys = "first-key-of-two,second-key-of-two";
    let mut up = command(
        &lake,
        &[
            "up",
            "--source",
            &file,
            "--cassandra-nodes",
            &nodes,
            "--keyspace",
            keyspace,
            "--addr",
            "127.0.0.1:0",
            "--poll-seconds",
            "0.2",
        ],
    );
    up.env("SESSIONLAKE_API_KEYS", keys)
        .env("SESSIONLAKE_NOW", "2016-11-07T00:00:00Z")
        .env_remove("SESSIONLAKE_API_KEYS_FILE");
    let mut api = Background::spawn(&mut up);
    api.wait_for("the API announced", Duration::from_secs(300), |api| api.stderr().contains("API ready on "));
    // The folds of posted events run at the background priority and
    // policy; the log's thread, which the answers wait for, at the
    // process's own.
    let threads = thread_priorities(api.child.as_ref().unwrap().id());
    let priorities_of = |prefix: &str| -> Vec<(i64, u32)> {
        threads.iter().filter(|(name, ..)| name.starts_with(prefix)).map(|&(_, nice, policy)| (nice, policy)).collect()
    };
    let (folds, log) = (priorities_of("live-ingest"), priorities_of("sessionlake-wal"));
    let background = (BACKGROUND_NICE.max(own_nice()), SCHED_BATCH);
    assert!(!folds.is_empty() && folds.iter().all(|&fold| fold == background), "{threads:?}");
    assert_eq!(log, vec![(own_nice(), SCHED_OTHER)], "{threads:?}");
    let log = api.stderr();
    let examples: Vec<&str> = log.lines().map(str::trim).filter(|line| line.starts_with("curl ")).collect();
    assert_eq!(examples.len(), 2, "two curl examples: {log}");
    for example in examples {
        assert!(!example.contains("first-key-of-two"), "keys are never printed: {example}");
        let status = Command::new("sh")
            .args(["-c", &format!("{example} -o /dev/null -w '%{{http_code}}'")])
            .env("SESSIONLAKE_API_KEYS", keys)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&status.stdout), "200", "{example}");
    }
    let status = api.terminate();
    assert!(status.success(), "{status}");
}

/// The default `--background-nice`.
const BACKGROUND_NICE: i64 = 10;

/// Linux scheduling policies, as `/proc/…/stat` gives them.
const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// Each thread of process `pid`: its name, nice value and scheduling
/// policy (Linux `/proc`).
fn thread_priorities(pid: u32) -> Vec<(String, i64, u32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else { continue };
        let name = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_string();
        threads.push((name, nice_in(&stat), stat_field(&stat, 41).parse().unwrap()));
    }
    threads
}

/// The nice value (field 19) of a `/proc/…/stat` line.
fn nice_in(stat: &str) -> i64 {
    stat_field(stat, 19).parse().unwrap()
}

/// Field `number` (from 3, the one after the name) of a `/proc/…/stat` line.
fn stat_field(stat: &str, number: usize) -> &str {
    stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(number - 3).unwrap()
}

/// This test thread's nice value, which the binaries it starts inherit.
fn own_nice() -> i64 {
    nice_in(&std::fs::read_to_string("/proc/thread-self/stat").unwrap())
}

/// A test keyspace, dropped at the end of the test, passed or failed.
struct DroppedKeyspace {
    nodes: String,
    name: String,
}

impl Drop for DroppedKeyspace {
    fn drop(&mut self) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dropped = runtime.block_on(async {
            let session = scylla::client::session_builder::SessionBuilder::new()
                .known_node(&self.nodes)
                .user("cassandra", "cassandra")
                .build()
                .await?;
            session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", self.name), ()).await?;
            anyhow::Ok(())
        });
        if let Err(error) = dropped {
            eprintln!("could not drop the test keyspace {}: {error:#}", self.name);
        }
    }
}
