//! sessionlake's REST API: the reference's endpoints over the Cassandra
//! serving tables, with paging, API keys, OpenAPI docs, metrics, and live
//! event ingest into the lake.
//!
//! ```text
//!  client ──HTTP──> metrics ─> request log ─> API key ─> timeout ─> routes
//!                                                                  │
//!     GET /models/...  ──> store::SessionStore (Cassandra reads, paged) ─┤
//!     POST /events     ──> store::EventSink    (group commit to r_session_events)
//!     /health /ready /metrics /docs /openapi.json
//! ```
//!
//! The API owns the two traits it needs from outside ([`store`]), so its
//! tests can run without Cassandra or Delta Lake; the binary plugs in the
//! real ones. [`serve`] runs the router on a listener until a shutdown
//! future resolves, letting requests in flight finish, and cuts off clients
//! too slow to send a request's head.

pub mod auth;
pub mod cache;
pub mod connect;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod routes;
pub mod state;
pub mod store;

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub use auth::ApiKeys;
pub use error::{ApiError, Detail};
pub use paging::TokenSigner;
pub use state::{ApiSettings, AppState};

/// The whole application: routes, docs, and the middleware stack.
pub fn router(state: AppState) -> Router {
    let (routes, api) = api_routes().split_for_parts();
    let max_body = state.settings().max_body_bytes;
    routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this path")
        })
        // Innermost first: each `layer` wraps what is above it.
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        // Bodies are read only by the JSON extractor: over the limit, it
        // rejects with 413 through `ApiError` (a JSON detail).
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_api_key))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(tower_http::LatencyUnit::Micros)),
        )
        .layer(middleware::from_fn_with_state(state.clone(), metrics::record))
        .with_state(state)
}

/// The documented routes (the OpenAPI document is generated from them).
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(routes::health::health))
        .routes(routes!(routes::health::ready))
        .routes(routes!(routes::health::metrics))
        .routes(routes!(routes::sessions::completed_sessions))
        .routes(routes!(routes::sessions::started_sessions))
        .routes(routes!(routes::events::post_events))
}

/// Middleware: answers 503 when a request takes longer than the timeout.
async fn time_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit: Duration = state.settings().request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(format!("the request took longer than {limit:?}; retry")).into_response(),
    }
}

/// How long a client may take to send a request's head (request line and
/// headers), counted from the connection's start or the end of the previous
/// response; after it the connection is closed without an answer. So it is
/// also how long an idle keep-alive connection is kept. hyper's own default.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection-level limits of [`serve_with`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// See [`HEADER_READ_TIMEOUT`], the default.
    pub header_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { header_read_timeout: HEADER_READ_TIMEOUT }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; requests in
/// flight are finished first. A client that takes longer than
/// [`HEADER_READ_TIMEOUT`] to send a request's head is disconnected.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, ServeOptions::default()).await
}

/// [`serve`] with explicit connection limits.
///
/// This is `axum::serve` plus a header read timeout. `axum::serve` drives
/// hyper without a timer, and hyper enforces its header read timeout only
/// with one: a client sending its headers one byte at a time and never
/// finishing (slow loris), or connecting and sending nothing, held a
/// connection and a task for ever. Slow *bodies* are bounded by the request
/// timeout middleware (503), since the handlers read bodies inside it.
/// Like `axum::serve`: accept errors (e.g. out of file descriptors) are
/// logged and retried by axum's `Listener`; on shutdown no new connection is
/// accepted, idle ones are closed, and requests in flight are finished.
pub async fn serve_with(
    mut listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(options.header_read_timeout);
    // Dropped on shutdown: every connection task sees it closed.
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(());
    // Each connection task holds a receiver: all dropped = all connections done.
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let connection = http.serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(router.clone()),
        );
        let mut shutdown_rx = shutdown_rx.clone();
        let done_rx = done_rx.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = shutdown_rx.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(done_rx);
        });
    }
    drop(listener);
    drop(shutdown_tx);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}
