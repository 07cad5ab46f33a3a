//! Crash anywhere: the pipeline (`sessionlake run`, on two files whose
//! sessions straddle them) is killed at random instants — at a crash point
//! inside ingest, raw, sessions or serve (`SESSIONLAKE_CRASH_AT`: abort
//! right after a commit or mid-burst), or by SIGKILL after a random delay —
//! then restarted, sometimes killed again while recovering, and finally run
//! to the end. Every trial's lake and keyspace must then hold exactly what
//! an uninterrupted run holds: the same rows, none lost, none doubled.
//!
//! Seeded: `TORTURE_SEED=<n>` replays a run (the seed is printed, and named
//! in every failure); `TORTURE_KILLS=<n>` sets how many kills land (20).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sessionlake_model::crash;

use crate::report;
use crate::support::require_crash_points;
use crate::support::{connect, drop_keyspace, nodes};
use crate::torture::dataset::dataset;
use crate::torture::lakes::TestLake;
use crate::torture::snapshot::Snapshot;

/// How a command is killed.
#[derive(Debug, Clone)]
enum Kill {
    /// Abort at the `hit`-th pass of a crash point.
    Point { name: &'static str, hit: u64 },
    /// SIGKILL after a delay.
    After(Duration),
}

/// What the reference run of one command did (to aim the kills).
#[derive(Debug)]
struct Reference {
    seconds: f64,
    report: Value,
}

/// The pipeline, one `run` per file, into `lake` and `keyspace`.
fn commands(lake: &TestLake, files: &[PathBuf; 2], keyspace: &str) -> Vec<Command> {
    let nodes = nodes();
    files
        .iter()
        .map(|file| {
            let mut command = lake.command(&[
                "run",
                "--source",
                &file.display().to_string(),
                "--cassandra-nodes",
                &nodes,
                "--keyspace",
                keyspace,
                // Small raw chunks, gold MERGEs and serve ranges: more
                // places to die (between two chunks of one file too).
                "--raw-chunk-lines",
                "100",
                "--max-rows-per-batch",
                "300",
                "--max-versions-per-range",
                "1",
                "--concurrency",
                "8",
            ]);
            command.env("SESSIONLAKE_LOG", "warn,sessionlake_lake=info,sessionlake_serving=info");
            command
        })
        .collect()
}

/// Runs `command` to the end; panics with its stderr if it fails.
fn run_clean(mut command: Command, context: &str) -> Reference {
    let started = Instant::now();
    let output = command.env_remove(crash::CRASH_AT_ENV).output().unwrap();
    assert!(output.status.success(), "{context}: {}", String::from_utf8_lossy(&output.stderr));
    Reference { seconds: started.elapsed().as_secs_f64(), report: serde_json::from_slice(&output.stdout).unwrap() }
}

/// Runs `command` and kills it as `kill` says. Returns the stage it was in
/// when it died, or `None` when it finished first.
fn run_killed(mut command: Command, kill: &Kill, context: &str) -> Option<String> {
    let log = tempfile::NamedTempFile::new().unwrap();
    command.stdout(Stdio::null()).stderr(log.reopen().unwrap());
    if let Kill::Point { name, hit } = kill {
        require_crash_points();
        command.env(crash::CRASH_AT_ENV, format!("{name}:{hit}"));
    }
    let mut child = command.spawn().unwrap();
    let status = match kill {
        Kill::Point { .. } => child.wait().unwrap(),
        Kill::After(delay) => {
            let deadline = Instant::now() + *delay;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() >= deadline {
                    child.kill().unwrap();
                    break child.wait().unwrap();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(!stderr.contains("panicked"), "{context}: a panic, not a kill: {stderr}");
    match status.signal() {
        Some(_) => Some(match kill {
            Kill::Point { name, .. } => name.split('.').next().unwrap().to_string(),
            Kill::After(_) => stage_from_log(&stderr),
        }),
        None => {
            assert!(status.success(), "{context}: failed instead of being killed: {stderr}");
            None
        }
    }
}

/// The stage a killed run was in: the last stage that logged.
fn stage_from_log(log: &str) -> String {
    let stages = [
        ("sessionlake_serving", "serve"),
        ("sessionlake_lake::sessions", "sessions"),
        ("sessionlake_lake::raw", "raw"),
        ("sessionlake_lake::landing", "ingest"),
    ];
    log.lines()
        .rev()
        .find_map(|line| stages.iter().find(|(target, _)| line.contains(target)).map(|(_, stage)| stage.to_string()))
        .unwrap_or_else(|| "ingest".to_string())
}

/// A kill aimed at a command, from what its reference run did. The first
/// trials go through every crash point in turn (so each stage is covered in
/// every run), the next one is a SIGKILL after a random delay; later ones
/// pick a point, or a SIGKILL delay, at random.
fn pick_kill(rng: &mut ChaCha8Rng, reference: &Reference, trial: usize) -> Kill {
    let name = match crash::POINTS.get(trial.wrapping_sub(1)) {
        Some(name) => name,
        None if trial == crash::POINTS.len() + 1 || rng.random_bool(0.35) => {
            return Kill::After(Duration::from_secs_f64(rng.random_range(0.0..reference.seconds)));
        }
        None => crash::POINTS[rng.random_range(0..crash::POINTS.len())],
    };
    let report = &reference.report;
    let passes = match name {
        crash::RAW_AFTER_CHUNK_MERGE => report["raw"]["chunks_merged"].as_u64(),
        crash::SESSIONS_AFTER_MERGE => report["sessions"]["batches"].as_u64(),
        crash::SERVE_AFTER_REQUEST => report["serve"]["requests"].as_u64(),
        crash::SERVE_BEFORE_PROGRESS => report["serve"]["ranges"].as_u64(),
        _ => Some(1),
    };
    Kill::Point { name, hit: rng.random_range(1..=passes.unwrap_or(1).max(1)) }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_anywhere_then_a_restart_ends_like_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let lakes = |name: &str| TestLake::local(&dir.path().join(name));
    crash_trials(dir.path(), lakes, "TORTURE_KILLS", 20, "crash").await;
}

/// Crash trials with the lakes `lakes` makes (one per trial name, and one
/// for the uninterrupted run), in keyspaces of their own, until the number
/// of kills `$kills_variable` (else `default_kills`) has landed. `filter`
/// names the test in the replay hint.
pub async fn crash_trials(
    dir: &Path,
    lakes: impl Fn(&str) -> TestLake,
    kills_variable: &str,
    default_kills: usize,
    filter: &str,
) {
    let seed: u64 = std::env::var("TORTURE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    let wanted_kills: usize = std::env::var(kills_variable).ok().and_then(|n| n.parse().ok()).unwrap_or(default_kills);
    let reference_lake = lakes("reference");
    let kind = reference_lake.kind();
    eprintln!("crash trials ({kind} lake): TORTURE_SEED={seed} {kills_variable}={wanted_kills}");
    let replay = format!("replay with TORTURE_SEED={seed} cargo test --test torture {filter}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let files = dataset(dir, seed % 1000);
    let session = connect(&nodes()).await;

    let keyspace = |trial: usize| format!("t_crash_{kind}_{}_{trial}", std::process::id());
    let references: Vec<Reference> = commands(&reference_lake, &files, &keyspace(0))
        .into_iter()
        .map(|command| run_clean(command, "the uninterrupted run"))
        .collect();
    let reference = Snapshot::take(&reference_lake, &session, &keyspace(0)).await;
    eprintln!(
        "uninterrupted run: {} raw rows, {} rejected, {} sessions, {} + {} served, in {:.1} s",
        reference.raw.len(),
        reference.rejected.len(),
        reference.sessions.len(),
        reference.served.started.len(),
        reference.served.completed.len(),
        references.iter().map(|run| run.seconds).sum::<f64>()
    );
    assert!(reference.raw.len() > 1000 && !reference.rejected.is_empty() && !reference.served.completed.is_empty());
    assert_eq!(reference.duplicates(), 0);

    let mut kills_landed = 0;
    let mut trial = 0;
    // At least one trial per crash point and one SIGKILL, however few kills
    // are wanted.
    let mut sigkills_landed = 0;
    while kills_landed < wanted_kills || trial < crash::POINTS.len() || sigkills_landed == 0 {
        trial += 1;
        assert!(trial <= wanted_kills.max(crash::POINTS.len()) * 3, "too few kills landed ({kills_landed}); {replay}");
        let lake = lakes(&format!("trial-{trial}"));
        let target = rng.random_range(0..files.len());
        let kills: Vec<Kill> = (0..if rng.random_bool(0.3) { 2 } else { 1 })
            .map(|_| pick_kill(&mut rng, &references[target], trial))
            .collect();
        let mut landed = Vec::new();
        for (index, command) in commands(&lake, &files, &keyspace(trial)).into_iter().enumerate() {
            let context = format!("trial {trial}, file {index}, kills {kills:?}; {replay}");
            if index == target {
                for kill in &kills {
                    let command = commands(&lake, &files, &keyspace(trial)).remove(index);
                    let stage = run_killed(command, kill, &context);
                    let point = match kill {
                        Kill::Point { name, .. } => name.to_string(),
                        Kill::After(_) => "SIGKILL after a random delay".to_string(),
                    };
                    landed.push(json!({"file": index, "kill": format!("{kill:?}"), "point": point, "stage": stage}));
                    kills_landed += usize::from(stage.is_some());
                    sigkills_landed += usize::from(stage.is_some() && matches!(kill, Kill::After(_)));
                }
            }
            run_clean(command, &format!("recovery in {context}"));
        }
        let after = Snapshot::take(&lake, &session, &keyspace(trial)).await;
        let differences = after.differences(&reference);
        report::record(
            "crash",
            json!({
                "lake": kind,
                "seed": seed,
                "trial": trial,
                "kills": landed,
                "rows_compared": after.rows(),
                "duplicates": after.duplicates(),
                "lost": after.lost(&reference),
                "equal": differences.is_empty(),
            }),
        );
        assert!(
            differences.is_empty(),
            "trial {trial} (kills {landed:?}) differs from the uninterrupted run: {differences:#?}; {replay}"
        );
        drop_keyspace(&session, &keyspace(trial)).await;
    }
    drop_keyspace(&session, &keyspace(0)).await;
    eprintln!(
        "crash trials ({kind} lake): {trial} trials, {kills_landed} kills landed, all equal to the uninterrupted run"
    );
}
