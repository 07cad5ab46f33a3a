//! One function per subcommand: build the stage from the configuration, run
//! it, print its report.

mod api;
mod sql;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use sessionlake_cassandra::CassandraConfig;
use sessionlake_lake::Lake;
use sessionlake_lake::landing::{Ingest, Source};
use sessionlake_lake::raw::RawStage;
use sessionlake_lake::sessions::SessionsStage;
use sessionlake_model::Clock;
use sessionlake_serving::serve::{ServeStage, WriteSettings};

use crate::config::{CassandraArgs, DbAction, DbArgs, GenerateArgs, GlobalArgs, IngestArgs, ServeArgs, SessionsArgs};
use crate::report;

pub use api::api;
pub use sql::sql;

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
    let stage = Ingest {
        lake: Lake::new(&global.lake),
        source: Source::parse(&args.source),
        show_progress: show_progress(global),
    };
    let landed = stage.run().await.with_context(|| format!("while landing {}", args.source))?;
    let summary = serde_json::json!({
        "file": landed.path.display().to_string(),
        "sha256": landed.entry.sha256,
        "size": landed.entry.size,
        "already_landed": landed.already_landed,
        "seconds": landed.seconds,
    });
    report::print(global, "ingest", &summary);
    Ok(())
}

/// `sessionlake raw`.
pub async fn raw(global: &GlobalArgs) -> Result<()> {
    let stage = RawStage { lake: Lake::new(&global.lake), debug: global.debug, show_progress: show_progress(global) };
    let outcome = stage.run().await.context("while refining landed files into the raw table")?;
    report::print(global, "raw", &outcome);
    Ok(())
}

/// `sessionlake sessions`.
pub async fn sessions(global: &GlobalArgs, args: &SessionsArgs) -> Result<()> {
    let stage = SessionsStage {
        lake: Lake::new(&global.lake),
        max_versions_per_batch: args.max_versions_per_batch,
        max_rows_per_batch: args.max_rows_per_batch,
        max_batches: args.max_batches,
        show_progress: show_progress(global) && !args.follow,
    };
    // One Ctrl-C listener for the whole loop: a signal that arrives during a
    // run must not be lost. Dropping a run mid-MERGE is safe: a Delta commit
    // is atomic and carries its own progress marker.
    let mut interrupted = std::pin::pin!(shutdown_signal());
    loop {
        let outcome = tokio::select! {
            outcome = stage.run() => outcome.context("while folding raw versions into the sessions table")?,
            _ = &mut interrupted => return Ok(()),
        };
        if !args.follow {
            report::print(global, "sessions", &outcome);
            return Ok(());
        }
        if outcome.batches > 0 {
            report::print(global, "sessions", &outcome);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(args.poll_seconds.max(0.05))) => {}
            _ = &mut interrupted => return Ok(()),
        }
    }
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

/// `sessionlake serve`.
pub async fn serve(global: &GlobalArgs, args: &ServeArgs) -> Result<()> {
    let stage = ServeStage {
        lake: Lake::new(&global.lake),
        cassandra: args.cassandra.config(),
        clock: Clock::from_option(global.now),
        writes: WriteSettings {
            concurrency: args.concurrency,
            batch_rows: args.batch_rows,
            patience: args.cassandra.patience(args.follow),
            stop_after_requests: args.stop_after_requests,
        },
        max_versions_per_range: args.max_versions_per_range,
        show_progress: show_progress(global) && !args.follow,
    };
    let mut interrupted = std::pin::pin!(shutdown_signal());
    let server = tokio::select! {
        server = stage.connect() => server.context("while connecting to Cassandra")?,
        _ = &mut interrupted => return Ok(()),
    };
    loop {
        // Dropping a pass mid-way is safe: progress is recorded only after
        // the rows it covers, and rows are idempotent upserts.
        let outcome = tokio::select! {
            outcome = server.run() => outcome.context("while serving gold versions into Cassandra")?,
            _ = &mut interrupted => return Ok(()),
        };
        if !args.follow || outcome.interrupted {
            report::print(global, "serve", &outcome);
            return Ok(());
        }
        if outcome.ranges > 0 {
            report::print(global, "serve", &outcome);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(args.poll_seconds.max(0.05))) => {}
            _ = &mut interrupted => return Ok(()),
        }
    }
}
