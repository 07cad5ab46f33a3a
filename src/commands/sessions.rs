//! `sessionlake sessions`: new raw versions into the gold table, once or
//! following.

use anyhow::{Context, Result};
use sessionlake_model::crash::StopAfter;

use sessionlake_lake::schema::RAW;

use super::follow::{Trigger, follow, poll_interval, shutdown_signal};
use super::stages::{SESSIONS_CONTEXT, sessions_stage, show_progress, show_sessions};
use crate::config::{GlobalArgs, SessionsArgs};
use crate::report;

/// `sessionlake sessions`.
pub async fn sessions(global: &GlobalArgs, args: &SessionsArgs) -> Result<()> {
    #[cfg(feature = "crash-points")]
    let max_batches = StopAfter::from_option(args.max_batches);
    #[cfg(not(feature = "crash-points"))]
    let max_batches = StopAfter::NEVER;
    let stage = sessions_stage(global, &args.batching, show_progress(global) && !args.follow, max_batches);
    if args.follow {
        let pass = || async { stage.run().await.context(SESSIONS_CONTEXT) };
        let trigger = Trigger::log(&global.lake, &RAW)?;
        follow(poll_interval(args.poll_seconds), shutdown_signal(), trigger, pass, show_sessions(global)).await;
        return Ok(());
    }
    tokio::select! {
        outcome = stage.run() => report::print(global, "sessions", &outcome.context(SESSIONS_CONTEXT)?),
        _ = shutdown_signal() => {}
    }
    Ok(())
}
