//! One function per subcommand: build the stage from the configuration, run
//! it, print its report.

mod api;
mod insights;
mod maintain;
mod quarantine;
mod run;
mod sql;
mod up;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use sessionlake_cassandra::CassandraConfig;
use sessionlake_lake::landing::{Ingest, Source};
use sessionlake_lake::raw::{ChunkLimits, RawStage};
use sessionlake_lake::sessions::{SessionsReport, SessionsStage};
use sessionlake_model::Clock;
use sessionlake_model::crash::StopAfter;
use sessionlake_serving::serve::{ServeReport, ServeStage, WriteSettings};

use crate::config::{
    CassandraArgs, DbAction, DbArgs, GenerateArgs, GlobalArgs, IngestArgs, ServeArgs, ServeWrites, SessionsArgs,
    SessionsBatching,
};
use crate::report;

pub use api::api;
pub use insights::insights;
pub use maintain::maintain;
pub use quarantine::quarantine;
pub use run::run;
pub use sql::sql;
pub use up::up;

/// Resolves on Ctrl-C or SIGTERM: every long-running command stops on either.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::mem::drop(interrupt.await),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

fn show_progress(global: &GlobalArgs) -> bool {
    !global.quiet && !global.json
}

/// `sessionlake generate`.
pub fn generate(global: &GlobalArgs, args: &GenerateArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.anomaly_rate) {
        bail!("--anomaly-rate must be between 0 and 1, got {}", args.anomaly_rate);
    }
    let started = std::time::Instant::now();
    let generator = sessionlake_generator::GeneratorConfig {
        sessions: args.sessions,
        seed: args.seed,
        anomaly_rate: args.anomaly_rate,
    };
    let truth = sessionlake_generator::generate_file(&generator, &args.out)
        .with_context(|| format!("while generating {}", args.out.display()))?;
    if let Some(path) = &args.truth {
        std::fs::write(path, truth.to_json_pretty())
            .with_context(|| format!("while writing the truth to {}", path.display()))?;
    }
    let summary = serde_json::json!({
        "out": args.out.display().to_string(),
        "truth": args.truth.as_ref().map(|path| path.display().to_string()),
        "lines": truth.lines,
        "sessions": truth.sessions,
        "raw_rows": truth.raw_rows,
        "rejected_rows": truth.rejected_rows,
        "seconds": started.elapsed().as_secs_f64(),
    });
    report::print(global, "generate", &summary);
    Ok(())
}

/// `sessionlake ingest`.
pub async fn ingest(global: &GlobalArgs, args: &IngestArgs) -> Result<()> {
    let stage =
        Ingest { lake: global.lake.clone(), source: Source::parse(&args.source), show_progress: show_progress(global) };
    let landed = stage
        .run_with_idle_timeout(args.download.idle_timeout)
        .await
        .with_context(|| format!("while landing {}", args.source))?;
    let summary = serde_json::json!({
        "file": landed.location,
        "sha256": landed.entry.sha256,
        "size": landed.entry.size,
        "already_landed": landed.already_landed,
        "seconds": landed.seconds,
    });
    report::print(global, "ingest", &summary);
    Ok(())
}

/// The raw stage as configured.
fn raw_stage(global: &GlobalArgs) -> RawStage {
    RawStage {
        lake: global.lake.clone(),
        debug: global.debug,
        chunk_limits: ChunkLimits { max_lines: global.raw_chunk_lines, max_bytes: global.raw_chunk_mb << 20 },
        show_progress: show_progress(global),
    }
}

/// `sessionlake raw`.
pub async fn raw(global: &GlobalArgs) -> Result<()> {
    let outcome = raw_stage(global).run().await.context("while refining landed files into the raw table")?;
    report::print(global, "raw", &outcome);
    quarantine::warn_quarantined(&outcome.quarantined);
    Ok(())
}

/// How long a pass in flight may go on after the stop signal.
const PASS_GRACE: Duration = Duration::from_secs(30);

/// The follower's backoff policy: the pause after a failed pass starts
/// here and doubles with each failure in a row, up to [`RETRY_PAUSE_MAX`];
/// a good pass starts it over.
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(500);
/// The longest pause between failed passes.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(30);

/// Runs `pass` again and again, `poll` apart, until `stop` resolves; each
/// good outcome goes to `show`, which says whether to go on.
///
/// A failed pass never ends the loop: it is logged (warn, with its cause
/// chain) and retried after [`retry_pause`]. The passes are idempotent
/// (each applies only what its progress marker says is new), so a retry
/// after a commit conflict, an I/O hiccup or a Cassandra timeout simply
/// does the work again. Errors that cannot heal (a bad configuration, a
/// store that rejects the credentials) are the ones a command finds before
/// it starts following, and those still end it.
///
/// A pass in flight when `stop` resolves gets [`PASS_GRACE`] to finish:
/// dropping it would be safe for the data (a Delta commit is atomic and
/// carries its own progress marker; Cassandra rows are idempotent upserts
/// recorded as applied only after they are acknowledged), but it leaves the
/// Delta kernel's detached reads running into the exit, where a cancelled
/// one panicked (found by `.ci/run` on `up`), and finishing keeps the
/// pass's work.
pub(crate) async fn follow<T, Pass>(
    poll: Duration,
    stop: impl Future<Output = ()>,
    mut pass: impl FnMut() -> Pass,
    mut show: impl FnMut(&T) -> bool,
) where
    Pass: Future<Output = Result<T>>,
{
    let mut stop = std::pin::pin!(stop);
    let mut failed_in_a_row = 0u32;
    loop {
        let mut running = std::pin::pin!(pass());
        let outcome = tokio::select! {
            outcome = &mut running => outcome,
            _ = &mut stop => {
                if tokio::time::timeout(PASS_GRACE, running).await.is_err() {
                    tracing::warn!("the pass in flight did not finish {PASS_GRACE:?} after the stop signal; stopping anyway");
                }
                return;
            }
        };
        let pause = match outcome {
            Ok(outcome) => {
                if failed_in_a_row > 0 {
                    tracing::info!(failed_in_a_row, "a follow pass succeeded again");
                    failed_in_a_row = 0;
                }
                if !show(&outcome) {
                    return;
                }
                poll
            }
            Err(error) => {
                failed_in_a_row += 1;
                let pause = retry_pause(failed_in_a_row);
                tracing::warn!(
                    error = %crate::one_line(&error),
                    failed_in_a_row,
                    retry_in = ?pause,
                    "a follow pass failed; retrying"
                );
                pause
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut stop => return,
        }
    }
}

/// The pause after the `failed_in_a_row`-th failed pass in a row (from 1):
/// 0.5 s, 1 s, 2 s, … up to 30 s.
fn retry_pause(failed_in_a_row: u32) -> Duration {
    let doublings = failed_in_a_row.saturating_sub(1).min(16);
    RETRY_PAUSE_MIN.saturating_mul(1 << doublings).min(RETRY_PAUSE_MAX)
}

/// The time between polls, never below 50 ms.
fn poll_interval(poll: Duration) -> Duration {
    poll.max(Duration::from_millis(50))
}

const SESSIONS_CONTEXT: &str = "while folding raw versions into the sessions table";
const SERVE_CONTEXT: &str = "while serving gold versions into Cassandra";

/// The sessions stage as configured.
fn sessions_stage(
    global: &GlobalArgs,
    batching: &SessionsBatching,
    show: bool,
    max_batches: StopAfter,
) -> SessionsStage {
    SessionsStage {
        lake: global.lake.clone(),
        max_versions_per_batch: batching.max_versions_per_batch,
        max_rows_per_batch: batching.max_rows_per_batch,
        max_batches,
        show_progress: show,
    }
}

/// Prints a sessions outcome that did something; a follow loop goes on.
fn show_sessions(global: &GlobalArgs) -> impl FnMut(&SessionsReport) -> bool {
    move |outcome| {
        if outcome.batches > 0 {
            report::print(global, "sessions", outcome);
        }
        true
    }
}

/// `sessionlake sessions`.
pub async fn sessions(global: &GlobalArgs, args: &SessionsArgs) -> Result<()> {
    #[cfg(feature = "crash-points")]
    let max_batches = StopAfter::from_option(args.max_batches);
    #[cfg(not(feature = "crash-points"))]
    let max_batches = StopAfter::NEVER;
    let stage = sessions_stage(global, &args.batching, show_progress(global) && !args.follow, max_batches);
    if args.follow {
        let pass = || async { stage.run().await.context(SESSIONS_CONTEXT) };
        follow(poll_interval(args.poll_seconds), shutdown_signal(), pass, show_sessions(global)).await;
        return Ok(());
    }
    tokio::select! {
        outcome = stage.run() => report::print(global, "sessions", &outcome.context(SESSIONS_CONTEXT)?),
        _ = shutdown_signal() => {}
    }
    Ok(())
}

impl CassandraArgs {
    fn config(&self) -> CassandraConfig {
        CassandraConfig {
            nodes: self.nodes.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            keyspace: self.keyspace.clone(),
            replication: self.replication.clone(),
            connect_timeout: Duration::from_secs(5),
            read_consistency: self.read_consistency,
            write_consistency: self.write_consistency,
            write_timeout: self.write_timeout_seconds.max(Duration::from_millis(50)),
        }
    }

    fn patience(&self, follow: bool) -> Option<Duration> {
        (!follow).then(|| Duration::from_secs(self.cassandra_wait_seconds))
    }
}

/// `sessionlake db init|reset`.
pub async fn db(global: &GlobalArgs, args: &DbArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let (action, cassandra, reset) = match &args.action {
        DbAction::Init(cassandra) => ("init", cassandra, false),
        DbAction::Reset(cassandra) => ("reset", cassandra, true),
    };
    let config = cassandra.config();
    let session = config.connect_with_retry(cassandra.patience(false)).await?;
    if reset {
        sessionlake_cassandra::schema::reset(&session, &config).await?;
    } else {
        sessionlake_cassandra::schema::init(&session, &config).await?;
    }
    let summary = serde_json::json!({
        "keyspace": config.keyspace,
        "action": action,
        "seconds": started.elapsed().as_secs_f64(),
    });
    report::print(global, "db", &summary);
    Ok(())
}

/// The serve stage as configured.
fn serve_stage(
    global: &GlobalArgs,
    cassandra: &CassandraArgs,
    writes: &ServeWrites,
    follow: bool,
    stop_after_requests: StopAfter,
) -> ServeStage {
    ServeStage {
        lake: global.lake.clone(),
        cassandra: cassandra.config(),
        clock: Clock::from_option(global.now),
        writes: WriteSettings {
            concurrency: writes.concurrency,
            batch_rows: writes.batch_rows,
            patience: cassandra.patience(follow),
            stop_after_requests,
        },
        max_versions_per_range: writes.max_versions_per_range,
        show_progress: show_progress(global) && !follow,
    }
}

/// Prints a serve outcome that did something; a follow loop goes on unless
/// a crash-test budget ran out.
fn show_serve(global: &GlobalArgs) -> impl FnMut(&ServeReport) -> bool {
    move |outcome| {
        if outcome.ranges > 0 || outcome.interrupted {
            report::print(global, "serve", outcome);
        }
        !outcome.interrupted
    }
}

/// `sessionlake serve`.
pub async fn serve(global: &GlobalArgs, args: &ServeArgs) -> Result<()> {
    #[cfg(feature = "crash-points")]
    let stop_after_requests = StopAfter::from_option(args.stop_after_requests);
    #[cfg(not(feature = "crash-points"))]
    let stop_after_requests = StopAfter::NEVER;
    let stage = serve_stage(global, &args.cassandra, &args.writes, args.follow, stop_after_requests);
    let mut interrupted = std::pin::pin!(shutdown_signal());
    let server = tokio::select! {
        server = stage.connect() => server.context("while connecting to Cassandra")?,
        _ = &mut interrupted => return Ok(()),
    };
    if args.follow {
        let pass = || async { server.run().await.context(SERVE_CONTEXT) };
        follow(poll_interval(args.poll_seconds), interrupted, pass, show_serve(global)).await;
        return Ok(());
    }
    tokio::select! {
        outcome = server.run() => report::print(global, "serve", &outcome.context(SERVE_CONTEXT)?),
        _ = &mut interrupted => {}
    }
    Ok(())
}
