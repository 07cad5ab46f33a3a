//! `sessionlake api`: the REST API over Cassandra, with live event ingest
//! into the lake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::FutureExt;
use futures::future::BoxFuture;
use sessionlake_api::store::{Committed, EventSink, Unavailable};
use sessionlake_api::{ApiKeys, ApiSettings, AppState, TokenSigner};
use sessionlake_lake::Lake;
use sessionlake_lake::raw::live::{LiveIngest, LiveSettings};
use sessionlake_model::{Clock, Event};
use tracing::{info, warn};

use crate::config::{ApiArgs, GlobalArgs};
use crate::report;

/// The raw table as the API's event sink.
struct LakeSink(LiveIngest);

impl EventSink for LakeSink {
    fn append(&self, events: Vec<Event>) -> BoxFuture<'_, Result<Committed, Unavailable>> {
        async move {
            self.0
                .append(events)
                .await
                .map(|appended| Committed { raw_version: appended.raw_version })
                .map_err(|error| Unavailable(format!("{error:#}")))
        }
        .boxed()
    }
}

/// `sessionlake api`.
pub async fn api(global: &GlobalArgs, args: &ApiArgs) -> Result<()> {
    let started = Instant::now();
    let cassandra = args.cassandra.config();
    cassandra.validate()?;
    let api_keys = args.api_keys()?;
    let settings = ApiSettings {
        clock: Clock::from_option(global.now),
        token_signer: match &args.token_secret {
            Some(secret) if !secret.trim().is_empty() => TokenSigner::new(secret.trim().as_bytes()),
            _ => TokenSigner::random(),
        },
        api_keys,
        request_timeout: Duration::from_secs_f64(args.request_timeout_seconds.max(0.1)),
        max_body_bytes: args.max_body_bytes,
    };
    if !settings.api_keys.is_enabled() {
        warn!("no API keys configured: every route is open to anyone who can reach {}", args.addr);
        eprintln!(
            "WARNING: no API keys configured (SESSIONLAKE_API_KEYS / SESSIONLAKE_API_KEYS_FILE): \
             the API on {} is open to anyone who can reach it",
            args.addr
        );
    }
    if args.token_secret.is_none() {
        info!("no SESSIONLAKE_API_TOKEN_SECRET: page tokens are valid in this process only");
    }

    let live = LiveIngest::start(Lake::new(&global.lake), LiveSettings::default())
        .await
        .context("while opening the raw table for live ingest")?;
    let state = AppState::new(settings, Arc::new(LakeSink(live.clone())));
    let read_timeout = Duration::from_secs_f64(args.read_timeout_seconds.max(0.05));
    let connector = sessionlake_api::connect::connect_in_background(state.clone(), cassandra, read_timeout);

    let listener =
        tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("while binding {}", args.addr))?;
    let local: SocketAddr = listener.local_addr()?;
    eprintln!(
        "API listening on http://{local} (docs: http://{local}/docs); /ready says 200 once Cassandra is connected"
    );
    info!(addr = %local, "API listening");

    let grace = Duration::from_secs_f64(args.shutdown_grace_seconds.max(0.0));
    let server = sessionlake_api::serve(listener, sessionlake_api::router(state.clone()), super::shutdown_signal());
    // After the signal, requests in flight get `grace` to finish.
    let mut server = std::pin::pin!(server);
    tokio::select! {
        served = &mut server => served.context("while serving HTTP")?,
        _ = async { super::shutdown_signal().await; tokio::time::sleep(grace).await } => {
            warn!("requests still in flight {grace:?} after the shutdown signal; stopping anyway");
        }
    }
    connector.abort();
    let live_report = live.shutdown().await.context("while committing the last posted events")?;
    let summary = serde_json::json!({
        "addr": local.to_string(),
        "live": live_report,
        "seconds": started.elapsed().as_secs_f64(),
    });
    report::print(global, "api", &summary);
    Ok(())
}

impl ApiArgs {
    /// The keys from `--api-keys` and the file of `--api-keys-file`.
    fn api_keys(&self) -> Result<ApiKeys> {
        let mut text = self.api_keys.clone().unwrap_or_default();
        if let Some(path) = &self.api_keys_file {
            let file = std::fs::read_to_string(path)
                .with_context(|| format!("while reading the API keys file {}", path.display()))?;
            text.push(',');
            text.push_str(&file);
        }
        Ok(ApiKeys::parse(&text))
    }
}
