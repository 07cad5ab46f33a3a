//! `sessionlake up`: the whole stack in one process. Runs the pipeline once
//! (`run`), then keeps `raw` following the landing zone (and `--watch`
//! landing a folder's new files), `sessions` and `serve` following new
//! versions, maintains the tables on a schedule (`--maintain-every-minutes`)
//! and serves the API, until Ctrl-C or SIGTERM stops them all cleanly. The
//! followers look at one name per poll while nothing happens.

use std::sync::Arc;

use anyhow::{Context, Result};
use futures::FutureExt;
use sessionlake_cassandra::read::SessionReader;
use sessionlake_insights::{ApiExamples, api_examples};
use sessionlake_model::Clock;
use sessionlake_model::crash::StopAfter;

use super::api::RunningApi;
use sessionlake_lake::raw::RawStage;
use sessionlake_lake::schema::{RAW, SESSIONS};

use super::follow::{Trigger, follow, poll_interval, shutdown_signal};
use super::ingest::watch_folder;
use super::raw::{RAW_CONTEXT, show_raw};
use super::stages::{
    SERVE_CONTEXT, SESSIONS_CONTEXT, raw_stage, serve_stage, sessions_stage, show_serve, show_sessions,
};
use crate::config::{GlobalArgs, UpArgs};
use crate::report;

/// `sessionlake up`.
pub async fn up(global: &GlobalArgs, args: &UpArgs) -> Result<()> {
    let cassandra = args.run.cassandra.config();
    cassandra.validate()?;
    let summary = super::run::pipeline(global, &args.run).await?;
    super::run::print(global, &summary);

    let api = RunningApi::start(global, &args.api).await?;
    let session = cassandra.connect_with_retry(args.run.cassandra.patience(false)).await?;
    let reader = SessionReader::prepare(session, &cassandra, args.api.read_timeout())
        .await
        .context("while preparing the API's reads")?;
    api.state.set_store(Arc::new(reader));
    let now_micros = Clock::from_option(global.now).now().timestamp_micros();
    let examples = api_examples(&global.lake, now_micros)
        .await
        .context("while looking up example requests in the sessions table")?;
    announce(&api, &examples, args.api.api_keys.is_some() || args.api.api_keys_file.is_some());

    // One signal stops all three: the followers between passes, the API
    // after its requests in flight (and after committing posted events).
    // A follower's failed pass is logged and retried (see `follow`): only
    // the API's own failure ends `up`.
    let stop = shutdown_signal().boxed().shared();
    let poll = poll_interval(args.poll_seconds);
    let land = watch_folder(global, &args.watch, args.run.download.idle_timeout, stop.clone());
    let raw = RawStage { show_progress: false, ..raw_stage(global) };
    let follow_raw = follow(
        poll,
        stop.clone(),
        Trigger::landing(&global.lake)?,
        || async { raw.run().await.context(RAW_CONTEXT) },
        show_raw(global),
    );
    let sessions = sessions_stage(global, &args.run.batching, false, StopAfter::NEVER);
    let follow_sessions = follow(
        poll,
        stop.clone(),
        Trigger::log(&global.lake, &RAW)?,
        || async { sessions.run().await.context(SESSIONS_CONTEXT) },
        show_sessions(global),
    );
    let server = serve_stage(global, &args.run.cassandra, &args.run.writes, true, StopAfter::NEVER)
        .connect()
        .await
        .context("while connecting to Cassandra")?;
    let follow_serve = follow(
        poll,
        stop.clone(),
        Trigger::log(&global.lake, &SESSIONS)?,
        || async { server.run().await.context(SERVE_CONTEXT) },
        show_serve(global),
    );
    let upkeep = super::maintain::on_schedule(
        global,
        &args.maintain,
        &args.run.cassandra,
        args.maintain_every_minutes,
        stop.clone(),
    );
    let (_, _, _, _, _, api_report) = tokio::try_join!(
        land,
        follow_raw.map(anyhow::Ok),
        follow_sessions.map(anyhow::Ok),
        follow_serve.map(anyhow::Ok),
        upkeep.map(anyhow::Ok),
        api.serve(stop)
    )?;
    report::print(global, "api", &api_report);
    Ok(())
}

/// Prints where the API is and two curl commands that return data.
fn announce(api: &RunningApi, examples: &ApiExamples, keys: bool) {
    let base = format!("http://{}", api.addr);
    // The shell expands this to the first of the comma-separated keys; the
    // keys themselves are never printed.
    let key = if keys { r#" -H "X-API-Key: ${SESSIONLAKE_API_KEYS%%,*}""# } else { "" };
    eprintln!();
    eprintln!("API ready on {base}  (docs: {base}/docs; Ctrl-C stops everything)");
    match &examples.started {
        Some((country, hours)) => eprintln!("  curl -s{key} {base}/models/started_sessions/{country}/{hours}"),
        None => eprintln!(
            "  (no session started in the 24 hours before the clock: set SESSIONLAKE_NOW, e.g. 2016-11-07T00:00:00Z for the 2016 data)"
        ),
    }
    match &examples.player {
        Some(player) => eprintln!("  curl -s{key} {base}/models/completed-sessions/{player}"),
        None => eprintln!("  (no completed session within a year before the clock)"),
    }
    if keys {
        eprintln!("  (the examples send the first key of $SESSIONLAKE_API_KEYS; any configured key works)");
    }
    eprintln!(
        "  raw, sessions and serve keep following: files landed (`sessionlake ingest`, or `up --watch DIR`) and POST /events are served within seconds"
    );
}
