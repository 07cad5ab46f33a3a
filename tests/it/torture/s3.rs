//! The torture suite's promises with the lake on a real S3 server
//! (SeaweedFS from `scripts/s3`, one per test on its own loopback address):
//! crashes anywhere, two API processes posting and compacting, `run` while
//! `up` follows, and the S3 server stopped for 30 s in the middle of a run.
//! Each ends exactly as on local disk: nothing lost, nothing doubled.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use sessionlake_lake::testing::S3Server;

use crate::report;
use crate::support::{connect, drop_keyspace, keyspace, nodes, report as run_report};
use crate::torture::concurrency::{run_command, run_while_up_follows_on, two_api_processes_post_into};
use crate::torture::crash::crash_trials;
use crate::torture::dataset::dataset;
use crate::torture::lakes::TestLake;
use crate::torture::snapshot::Snapshot;

/// How long the S3 server stays down.
const DOWN_FOR: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn on_s3_a_crash_anywhere_then_a_restart_ends_like_an_uninterrupted_run() {
    let server = S3Server::start("127.0.0.61");
    let dir = tempfile::tempdir().unwrap();
    // Every crash point once, a SIGKILL, then random ones (fewer than on
    // local disk: each trial is slower on S3).
    crash_trials(dir.path(), |name| TestLake::on(&server, name), "TORTURE_S3_KILLS", 10, "on_s3_a_crash").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_s3_two_api_processes_post_into_one_lake() {
    let server = S3Server::start("127.0.0.62");
    two_api_processes_post_into(&TestLake::on(&server, "lake")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_s3_run_while_up_follows() {
    let server = S3Server::start("127.0.0.63");
    let dir = tempfile::tempdir().unwrap();
    run_while_up_follows_on(&TestLake::on(&server, "lake"), dir.path()).await;
}

/// The S3 server is stopped for [`DOWN_FOR`] while `run` refines a file:
/// the run rides it out (object_store retries) or fails with one clear
/// error line; either way the next run leaves the lake and the serving
/// tables exactly as an uninterrupted run does.
#[tokio::test(flavor = "multi_thread")]
async fn on_s3_a_stopped_server_during_a_run_loses_nothing() {
    let server = S3Server::start("127.0.0.64");
    let dir = tempfile::tempdir().unwrap();
    let files = dataset(dir.path(), 29);
    let nodes = nodes();
    let session = connect(&nodes).await;

    let reference = TestLake::on(&server, "reference");
    let reference_keyspace = keyspace("s3_outage_reference");
    let mut seconds = Vec::new();
    for file in &files {
        let started = Instant::now();
        run_report(run_command(&reference, file, &nodes, &reference_keyspace));
        seconds.push(started.elapsed());
    }
    let expected = Snapshot::take(&reference, &session, &reference_keyspace).await;

    let lake = TestLake::on(&server, "outage");
    let keyspace = keyspace("s3_outage");
    run_report(run_command(&lake, &files[0], &nodes, &keyspace));
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut run = run_command(&lake, &files[1], &nodes, &keyspace)
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    // Into the middle of the run: as soon as its raw stage has parsed a
    // chunk of the file (a sleep for a share of the reference run's time
    // missed the run on a loaded machine), or at the latest after 40 % of
    // that time.
    let deadline = Instant::now() + seconds[1].mul_f64(0.4);
    while Instant::now() < deadline
        && run.try_wait().unwrap().is_none()
        && !std::fs::read_to_string(log.path()).unwrap_or_default().contains("parsed chunk")
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The run is frozen while the server stops, so the outage falls inside
    // it however fast the rest of the run would be (a fast machine finished
    // it during the server's shutdown).
    if let Some(status) = run.try_wait().unwrap() {
        let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
        panic!("the run ended ({status}) before the outage; the test proved nothing:\n{stderr}");
    }
    signal(&run, "STOP");
    let stopped = Instant::now();
    server.stop();
    signal(&run, "CONT");
    std::thread::sleep(DOWN_FOR.saturating_sub(stopped.elapsed()));
    server.restart();
    eprintln!("S3 was down for {:.1} s", stopped.elapsed().as_secs_f64());
    let status = run.wait().unwrap();
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let rode_it_out = status.success();
    if !rode_it_out {
        let error = stderr.lines().rev().find(|line| line.starts_with("error")).unwrap_or_default();
        eprintln!("the run failed during the outage: {error}");
        assert!(!error.is_empty(), "a failed run ends with one error line: {stderr}");
        run_report(run_command(&lake, &files[1], &nodes, &keyspace));
    }

    let after = Snapshot::take(&lake, &session, &keyspace).await;
    let differences = after.differences(&expected);
    report::record(
        "outage",
        json!({
            "what": "S3 server stopped 30 s during a run",
            "outages": 1,
            "down_seconds": DOWN_FOR.as_secs(),
            "run_rode_it_out": rode_it_out,
            "rows_compared": after.rows(),
            "duplicates": after.duplicates(),
            "lost": after.lost(&expected),
            "equal": differences.is_empty(),
        }),
    );
    assert!(differences.is_empty(), "differs from the uninterrupted run: {differences:#?}");
    drop_keyspace(&session, &keyspace).await;
    drop_keyspace(&session, &reference_keyspace).await;
}

/// Sends `signal` (`STOP`, `CONT`) to a child process with kill(1).
fn signal(child: &std::process::Child, signal: &str) {
    let status =
        std::process::Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
    assert!(status.success(), "kill -{signal} {} failed", child.id());
}
