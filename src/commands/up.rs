//! `sessionlake up`: the whole stack in one process. Runs the pipeline once
//! (`run`), then keeps `sessions` and `serve` following new versions,
//! maintains the tables on a schedule (`--maintain-every-minutes`) and
//! serves the API, until Ctrl-C or SIGTERM stops them all cleanly.

use std::sync::Arc;

use anyhow::{Context, Result};
use futures::FutureExt;
use sessionlake_cassandra::read::SessionReader;
use sessionlake_lake::{Lake, query};
use sessionlake_model::Clock;
use sessionlake_model::crash::StopAfter;
use sessionlake_model::tables::SESSIONS_TABLE;
use sessionlake_model::tables::sessions::{COUNTRY, END_TS, PLAYER_ID, START_TS};

use super::api::RunningApi;
use super::{
    SERVE_CONTEXT, SESSIONS_CONTEXT, follow, poll_interval, serve_stage, sessions_stage, show_serve, show_sessions,
};
use crate::config::{GlobalArgs, UpArgs};
use crate::report;

const HOUR_MICROS: i64 = 3_600_000_000;
const YEAR_MICROS: i64 = 365 * 24 * HOUR_MICROS;

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
    let examples = Examples::find(&global.lake.clone(), &Clock::from_option(global.now)).await?;
    announce(&api, &examples, args.api.api_keys.is_some() || args.api.api_keys_file.is_some());

    // One signal stops all three: the followers between passes, the API
    // after its requests in flight (and after committing posted events).
    // A follower's failed pass is logged and retried (see `follow`): only
    // the API's own failure ends `up`.
    let stop = super::shutdown_signal().boxed().shared();
    let poll = poll_interval(args.poll_seconds);
    let sessions = sessions_stage(global, &args.run.batching, false, StopAfter::NEVER);
    let follow_sessions =
        follow(poll, stop.clone(), || async { sessions.run().await.context(SESSIONS_CONTEXT) }, show_sessions(global));
    let server = serve_stage(global, &args.run.cassandra, &args.run.writes, true, StopAfter::NEVER)
        .connect()
        .await
        .context("while connecting to Cassandra")?;
    let follow_serve =
        follow(poll, stop.clone(), || async { server.run().await.context(SERVE_CONTEXT) }, show_serve(global));
    let upkeep = super::maintain::on_schedule(
        global,
        &args.maintain,
        &args.run.cassandra,
        args.maintain_every_minutes,
        stop.clone(),
    );
    let (_, _, _, api_report) = tokio::try_join!(
        follow_sessions.map(anyhow::Ok),
        follow_serve.map(anyhow::Ok),
        upkeep.map(anyhow::Ok),
        api.serve(stop)
    )?;
    report::print(global, "api", &api_report);
    Ok(())
}

/// Two requests that return data right now, found in the gold table.
struct Examples {
    /// The player of the latest session completed before the clock (served:
    /// within the year of retention).
    player: Option<String>,
    /// The country with the most sessions started in the last 3 hours (or
    /// else 24), and those hours.
    started: Option<(String, u32)>,
}

impl Examples {
    async fn find(lake: &Lake, clock: &Clock) -> Result<Self> {
        let now = clock.now().timestamp_micros();
        let first_row = |statement: String| async move {
            let batches = query::sql(lake, &statement).await.with_context(|| format!("while running {statement}"))?;
            anyhow::Ok(query::text_rows(&batches)?.into_iter().next().map(|row| row.into_iter().flatten().collect()))
        };
        let since = |column: &str, micros: i64| {
            format!("{column} IS NOT NULL AND CAST({column} AS BIGINT) BETWEEN {} AND {now}", now - micros)
        };
        let player: Option<Vec<String>> = first_row(format!(
            "SELECT {PLAYER_ID} FROM {SESSIONS_TABLE} WHERE {} ORDER BY {END_TS} DESC LIMIT 1",
            since(END_TS, YEAR_MICROS)
        ))
        .await?;
        let mut started = None;
        for hours in [3, 24] {
            let busiest: Option<Vec<String>> = first_row(format!(
                "SELECT CAST({COUNTRY} AS VARCHAR) AS country, COUNT(*) AS n FROM {SESSIONS_TABLE} \
                 WHERE {COUNTRY} IS NOT NULL AND {} GROUP BY 1 ORDER BY n DESC, country LIMIT 1",
                since(START_TS, i64::from(hours) * HOUR_MICROS)
            ))
            .await?;
            if let Some(country) = busiest.and_then(|row| row.into_iter().next()) {
                started = Some((country, hours));
                break;
            }
        }
        Ok(Self { player: player.and_then(|row| row.into_iter().next()), started })
    }
}

/// Prints where the API is and two curl commands that return data.
fn announce(api: &RunningApi, examples: &Examples, keys: bool) {
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
    eprintln!("  sessions and serve keep following: POST /events and the new sessions are served within seconds");
}
