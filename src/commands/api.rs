//! `sessionlake api`: the REST API over Cassandra, with live event ingest
//! into the lake.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use sessionlake_api::store::{Committed, EventSink, Unavailable};
use sessionlake_api::{ApiKeys, ApiSettings, AppState, TokenSigner};
use sessionlake_lake::raw::live::{Durable, LiveIngest, LiveSettings, WalSettings};
use sessionlake_model::{Clock, Event};
use tracing::{info, warn};

use crate::config::{AckMode, ApiArgs, ApiOptions, GlobalArgs};
use crate::report;

/// The raw table as the API's event sink.
struct LakeSink(LiveIngest);

impl EventSink for LakeSink {
    fn append(&self, events: Vec<Event>) -> BoxFuture<'_, Result<Committed, Unavailable>> {
        async move {
            self.0
                .append(events)
                .await
                .map(|appended| match appended.durable_in {
                    Durable::RawVersion(version) => Committed::in_raw(version),
                    Durable::WalSequence(seq) => Committed::in_wal(seq),
                })
                .map_err(|error| Unavailable(format!("{error:#}")))
        }
        .boxed()
    }

    fn health(&self) -> Result<(), Unavailable> {
        self.0.health().map_err(|error| Unavailable(format!("{error:#}")))
    }
}

/// `sessionlake api`.
pub async fn api(global: &GlobalArgs, args: &ApiArgs) -> Result<()> {
    let cassandra = args.cassandra.config();
    cassandra.validate()?;
    let api = RunningApi::start(global, &args.options).await?;
    let read_timeout = args.options.read_timeout();
    let connector = sessionlake_api::connect::connect_in_background(api.state.clone(), cassandra, read_timeout);
    eprintln!(
        "API listening on http://{addr} (docs: http://{addr}/docs); /ready says 200 once Cassandra is connected",
        addr = api.addr
    );
    let stop = super::follow::shutdown_signal().boxed().shared();
    let summary = api.serve(stop).await;
    connector.abort();
    report::print(global, "api", &summary?);
    Ok(())
}

/// An API bound to its address, with live ingest open, not serving yet.
pub struct RunningApi {
    /// The state the routes share (install the Cassandra reader here).
    pub state: AppState,
    /// The address it listens on.
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    live: LiveIngest,
    /// Live ingest's own runtime: its merges are CPU work that must not
    /// hold up the request handlers' threads.
    _ingest_runtime: IngestRuntime,
    grace: Duration,
    started: Instant,
}

impl RunningApi {
    /// Checks the options, opens live ingest into the raw table and binds
    /// the address.
    pub async fn start(global: &GlobalArgs, options: &ApiOptions) -> Result<Self> {
        let started = Instant::now();
        let settings = options.settings(global)?;
        if !settings.api_keys.is_enabled() {
            // Printed, not logged: it must show whatever the log level is.
            eprintln!(
                "WARNING: no API keys configured (SESSIONLAKE_API_KEYS / SESSIONLAKE_API_KEYS_FILE): \
                 the API on {} is open to anyone who can reach it",
                options.addr
            );
        }
        if options.token_secret.is_none() {
            info!("no SESSIONLAKE_API_TOKEN_SECRET: page tokens are valid in this process only");
        }
        let live_settings = options.live_settings(global);
        let wal_dir = live_settings.wal.as_ref().map(|wal| wal.dir.clone());
        let ingest_runtime = IngestRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("live-ingest")
                .on_thread_start({
                    let nice = global.background_nice;
                    move || crate::priority::lower_this_thread(nice)
                })
                .enable_all()
                .build()
                .context("while starting live ingest's runtime")?,
        ));
        // Started from here, so that the log's thread keeps this thread's
        // priority; the folds run on the ingest runtime, at the background one.
        let live = LiveIngest::start_on(global.lake.clone(), live_settings, ingest_runtime.handle())
            .await
            .context("while opening the raw table for live ingest")?;
        if let (Some(dir), Some(replica)) = (wal_dir, live.wal_replica()) {
            info!(
                dir = %dir.display(),
                replica,
                "posted events are acknowledged once synced to this write-ahead log (its folds carry live-wal-{replica})"
            );
        }
        let state = AppState::new(settings, Arc::new(LakeSink(live.clone())));
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .with_context(|| format!("while binding {}", options.addr))?;
        let addr = listener.local_addr()?;
        info!(%addr, "API listening");
        let grace = options.shutdown_grace_seconds;
        Ok(Self { state, addr, listener, live, _ingest_runtime: ingest_runtime, grace, started })
    }

    /// Serves until `stop` resolves; requests in flight then get the grace
    /// period to finish, and the events already posted are committed.
    /// Returns the report.
    pub async fn serve(self, stop: Shared<BoxFuture<'static, ()>>) -> Result<serde_json::Value> {
        let Self { state, addr, listener, live, _ingest_runtime, grace, started } = self;
        let server = sessionlake_api::serve(listener, sessionlake_api::router(state), stop.clone());
        let mut server = std::pin::pin!(server);
        tokio::select! {
            served = &mut server => served.context("while serving HTTP")?,
            _ = async { stop.await; tokio::time::sleep(grace).await } => {
                warn!("requests still in flight {grace:?} after the shutdown signal; stopping anyway");
            }
        }
        let live_report = live.shutdown().await.context("while committing the last posted events")?;
        Ok(serde_json::json!({
            "addr": addr.to_string(),
            "live": live_report,
            "seconds": started.elapsed().as_secs_f64(),
        }))
    }
}

/// Live ingest's runtime (one worker thread), so that its merges never hold
/// up a request handler's thread. Dropped without waiting: a runtime may
/// not be dropped from async code, and by then its tasks are done (or the
/// API failed to start).
struct IngestRuntime(Option<tokio::runtime::Runtime>);

impl IngestRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("live until dropped").handle()
    }
}

impl Drop for IngestRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl ApiOptions {
    /// Live ingest's settings from these options.
    fn live_settings(&self, global: &GlobalArgs) -> LiveSettings {
        let settings = match self.ack {
            AckMode::Commit => LiveSettings::default(),
            AckMode::Wal => {
                let dir = self.wal_dir.clone().unwrap_or_else(|| match global.lake.local_root() {
                    Some(root) => root.join("_wal").join("api"),
                    None => PathBuf::from("sessionlake-wal"),
                });
                LiveSettings::with_wal(WalSettings { fold_interval: self.wal_fold_seconds, ..WalSettings::new(dir) })
            }
        };
        LiveSettings { compact_after_commits: self.compact_after_commits, ..settings }
    }

    /// The API's settings from these options.
    fn settings(&self, global: &GlobalArgs) -> Result<ApiSettings> {
        Ok(ApiSettings {
            clock: Clock::from_option(global.now),
            token_signer: match &self.token_secret {
                Some(secret) if !secret.trim().is_empty() => TokenSigner::new(secret.trim().as_bytes()),
                _ => TokenSigner::random(),
            },
            api_keys: self.api_keys()?,
            request_timeout: self.request_timeout_seconds.max(Duration::from_millis(100)),
            max_body_bytes: self.max_body_bytes,
            started_cache_max_age: self.started_cache_seconds,
        })
    }

    /// How long one Cassandra read may take.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout_seconds.max(Duration::from_millis(50))
    }

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
