//! The lake's storage fails: the disk fills up in the middle of a run, or
//! the file system turns read-only under a running `raw`. Each must end in
//! one clear error line (no panic, no half-written table), and once the
//! space or write access is back the next run must finish the job and hold
//! exactly what a run that never failed holds.
//!
//! The lake lives on a small tmpfs mounted by the test (it needs root, as
//! on the CI machine; elsewhere the tests say they are skipped and pass).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::report;
use crate::support::sessionlake;
use crate::torture::snapshot::{Rows, lake_rows};

/// A tmpfs mounted for one test; unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` at `path`. A machine where the test cannot
    /// mount (not root) fails the test with the reason: a test that skips
    /// itself proves nothing (CI runs as root).
    fn mount(path: &Path, bytes: u64) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("`mount` runs");
        assert!(
            output.status.success(),
            "cannot mount a tmpfs at {} (the storage tests need root): {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Self { path: path.to_path_buf() }
    }

    /// `mount -o remount,<options>`; false when the kernel refuses (busy).
    fn remount(&self, options: &str) -> bool {
        Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// A generated file of `sessions` sessions with anomalies, outside the lake.
fn source(dir: &Path, sessions: u64) -> String {
    let file = dir.join("events.jsonl.bz2").display().to_string();
    let output = sessionlake(
        dir,
        &["generate", "--out", &file, "--sessions", &sessions.to_string(), "--seed", "5", "--anomaly-rate", "0.02"],
    )
    .output()
    .unwrap();
    assert!(output.status.success());
    file
}

/// ingest, raw and sessions, stopping at the first failure.
fn chain(lake: &Path, file: &str) -> Result<(), Output> {
    for args in [vec!["ingest", "--source", file], vec!["raw"], vec!["sessions"]] {
        let output = sessionlake(lake, &args).output().unwrap();
        if !output.status.success() {
            return Err(output);
        }
    }
    Ok(())
}

/// A failure is one `error: …` line naming `cause`, and no panic.
fn assert_clear_error(output: &Output, cause: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "an error exit, not a crash: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic message: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|line| line.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {errors:?} in {stderr}");
    assert!(errors[0].contains(cause), "the error names the cause ({cause}): {errors:?} in {stderr}");
}

fn du(path: &Path) -> u64 {
    let output = Command::new("du").args(["-sb"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

/// The lake tables of an uninterrupted chain, and the bytes the lake takes.
async fn reference(dir: &Path, file: &str) -> ([Rows; 3], u64) {
    let lake = dir.join("reference");
    chain(&lake, file).unwrap_or_else(|output| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    (lake_rows(&lake).await, du(&lake))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_a_clear_error_and_the_next_run_finishes_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let file = source(dir.path(), 3_000);
    let (expected, size) = reference(dir.path(), &file).await;
    // Room for a third, then two thirds, of what the lake needs.
    for share in [3, 3 * 2] {
        let lake = dir.path().join(format!("full-{share}"));
        let disk = Tmpfs::mount(&lake, size * share / 9);
        let failed = chain(&lake, &file).expect_err("the lake does not fit");
        assert_clear_error(&failed, "No space left on device");
        assert!(disk.remount(&format!("size={}", size * 4)), "more space");
        chain(&lake, &file).unwrap_or_else(|output| panic!("{}", String::from_utf8_lossy(&output.stderr)));
        let got = lake_rows(&lake).await;
        report::record(
            "storage",
            json!({
                "what": format!("disk full at {}% of the lake's size, then space back", share * 100 / 9),
                "outages": 1,
                "rows_compared": expected.iter().map(Vec::len).sum::<usize>(),
                "equal": got == expected,
            }),
        );
        assert!(got == expected, "after the disk filled at {share}/9, the tables differ from an uninterrupted run");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lake_turned_read_only_mid_run_is_a_clear_error_and_no_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let file = source(dir.path(), 3_000);
    let (expected, size) = reference(dir.path(), &file).await;
    let started = Instant::now();
    let raw_seconds = {
        let lake = dir.path().join("timing");
        sessionlake(&lake, &["ingest", "--source", &file]).output().unwrap();
        let begin = Instant::now();
        assert!(sessionlake(&lake, &["raw"]).output().unwrap().status.success());
        begin.elapsed()
    };
    for (attempt, share) in [0.2, 0.5, 0.8].into_iter().enumerate() {
        let lake = dir.path().join(format!("read-only-{attempt}"));
        let disk = Tmpfs::mount(&lake, size * 8);
        assert!(sessionlake(&lake, &["ingest", "--source", &file]).output().unwrap().status.success());
        let mut raw = sessionlake(&lake, &["raw"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(raw_seconds.mul_f64(share));
        // The kernel refuses while a file is open for writing: try until it
        // takes, or the run is over.
        let mut read_only = false;
        while raw.try_wait().unwrap().is_none() {
            if disk.remount("ro") {
                read_only = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let output = raw.wait_with_output().unwrap();
        if read_only && !output.status.success() {
            assert_clear_error(&output, "Read-only file system");
        }
        assert!(disk.remount("rw"), "write access back");
        chain(&lake, &file).unwrap_or_else(|output| panic!("{}", String::from_utf8_lossy(&output.stderr)));
        let got = lake_rows(&lake).await;
        report::record(
            "storage",
            json!({
                "what": format!("lake read-only at {:.0}% of a raw run", share * 100.0),
                "outages": u64::from(read_only),
                "failed_clearly": !output.status.success(),
                "rows_compared": expected.iter().map(Vec::len).sum::<usize>(),
                "equal": got == expected,
            }),
        );
        assert!(got == expected, "after turning read-only at {share}, the tables differ from an uninterrupted run");
    }
    eprintln!("read-only trials took {:?}", started.elapsed());
}
