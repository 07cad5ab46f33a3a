//! `sessionlake db init|reset`: the serving schema in Cassandra.

use anyhow::Result;

use crate::config::{DbAction, DbArgs, GlobalArgs};
use crate::report;

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
