//! `/metrics` in the Prometheus text format: requests and latency per
//! route, events accepted and rejected, commit latency, Cassandra state.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::state::AppState;

/// The API's metrics, in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Events committed through `POST /events`.
    pub events_accepted: IntCounter,
    /// Events refused by `POST /events` validation.
    pub events_rejected: IntCounter,
    /// Seconds from receiving a valid batch to its durable commit.
    pub commit_seconds: Histogram,
    /// 1 once Cassandra is connected and the reads are prepared.
    pub cassandra_connected: IntGauge,
    /// First pages of started sessions answered by the micro-cache: hits,
    /// misses and background refreshes.
    pub started_cache: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("sessionlake_http_requests_total", "HTTP requests answered, by route, method and status"),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "sessionlake_http_request_duration_seconds",
                "HTTP request latency, by route and method",
            )
            .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["route", "method"],
        )
        .expect("valid metric");
        let events_accepted =
            IntCounter::new("sessionlake_events_accepted_total", "events committed through POST /events")
                .expect("valid metric");
        let events_rejected =
            IntCounter::new("sessionlake_events_rejected_total", "events refused by POST /events validation")
                .expect("valid metric");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "sessionlake_event_commit_seconds",
                "seconds from a valid POST /events batch to its durable commit",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        let cassandra_connected =
            IntGauge::new("sessionlake_cassandra_connected", "1 once Cassandra is connected").expect("valid metric");
        let started_cache = IntCounterVec::new(
            Opts::new(
                "sessionlake_started_cache_total",
                "first pages of started sessions by cache outcome (hit, miss, refresh)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(events_accepted.clone()),
            Box::new(events_rejected.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(cassandra_connected.clone()),
            Box::new(started_cache.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            latency,
            events_accepted,
            events_rejected,
            commit_seconds,
            cassandra_connected,
            started_cache,
        }
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buffer).expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

/// Middleware: counts and times every request under its route template
/// (`/models/completed-sessions/{player_id}`, not the player's id).
///
/// It runs before the API key check, so anyone can choose the method and
/// the path: every label value comes from a fixed set (a label series lives
/// as long as the process, so a client inventing methods or paths must not
/// be able to create new ones).
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| route_group(request.uri().path()), |path| path.as_str().to_string());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let metrics = state.metrics();
    metrics.latency.with_label_values(&[&route, method]).observe(started.elapsed().as_secs_f64());
    metrics.requests.with_label_values(&[&route, method, response.status().as_str()]).inc();
    response
}

/// The method label: a standard method the API may see, or `OTHER`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// A bounded label for a path no route matched (never the path itself).
fn route_group(path: &str) -> String {
    if path == "/docs" || path.starts_with("/docs/") { "/docs".into() } else { "unmatched".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for invented in ["TRACE", "CONNECT", "FOO", "get", "X-A1"] {
            assert_eq!(method_label(&Method::from_bytes(invented.as_bytes()).unwrap()), "OTHER", "{invented}");
        }
        assert_eq!(route_group("/docs/swagger-ui.css"), "/docs");
        assert_eq!(route_group("/models/nothing/1234"), "unmatched");
        assert_eq!(route_group("/docsx"), "unmatched");
    }
}
