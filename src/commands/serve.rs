//! `sessionlake serve`: new gold versions into Cassandra, once or
//! following.

use anyhow::{Context, Result};
use sessionlake_model::crash::StopAfter;

use sessionlake_lake::schema::SESSIONS;

use super::follow::{Trigger, follow, poll_interval, shutdown_signal};
use super::stages::{SERVE_CONTEXT, serve_stage, show_serve};
use crate::config::{GlobalArgs, ServeArgs};
use crate::report;

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
        let trigger = Trigger::log(&global.lake, &SESSIONS)?;
        follow(poll_interval(args.poll_seconds), interrupted, trigger, pass, show_serve(global)).await;
        return Ok(());
    }
    tokio::select! {
        outcome = server.run() => report::print(global, "serve", &outcome.context(SERVE_CONTEXT)?),
        _ = &mut interrupted => {}
    }
    Ok(())
}
