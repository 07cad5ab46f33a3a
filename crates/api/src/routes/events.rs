//! `POST /events`: live ingest of 1 to 10 events into the raw table.
//!
//! Every event is validated exactly as a line of a file is (the same
//! parser, the same reason codes). All valid: they are committed durably
//! (the sink group-commits concurrent requests) and the answer is 202. Any
//! invalid: 422 naming each bad event, and nothing is written.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sessionlake_model::parse::parse_line;
use sessionlake_model::reject::RejectReason;
use utoipa::ToSchema;

use crate::error::{ApiError, Detail};
use crate::state::AppState;

/// Most events in one request.
pub const MAX_EVENTS_PER_REQUEST: usize = 10;

/// An event as in the files (DATA.md); fields beyond these are ignored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"event": "start", "ts": "2016-11-06T23:30:00.000000", "session_id": "4a0c43c9-c43a-42ff-ba55-67563dfa35d4", "player_id": "0a2d12a1a7e145de8bae44c0c6e06629", "country": "FI"}))]
pub struct EventIn {
    /// `start` or `end`.
    pub event: String,
    /// ISO 8601 date-time without offset, read as UTC.
    pub ts: String,
    /// A UUID with dashes.
    pub session_id: String,
    /// 32 lowercase hexadecimal characters.
    pub player_id: String,
    /// ISO 3166-1 alpha-2 code; required on `start` events only.
    pub country: Option<String>,
}

/// The answer to a committed batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventsAccepted {
    /// Events in the batch, all now durable (an event already there
    /// counts: retrying a batch is harmless).
    pub accepted: usize,
    /// The raw table version that holds them, when the API waited for the
    /// commit (`--ack commit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_version: Option<i64>,
    /// The API's write-ahead-log record that holds them (`--ack wal`, the
    /// default): synced to disk, in the raw table within seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_sequence: Option<u64>,
}

/// Why one event of a batch is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventError {
    /// Position of the event in the array, from 0.
    pub index: usize,
    /// A stable reason code, as in the rejected table (e.g. `invalid_ts`).
    pub reason: String,
    /// What is wrong, for a human.
    pub message: String,
}

/// The answer to a batch with invalid events (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventsRejected {
    /// A summary.
    pub detail: String,
    /// One entry per invalid event.
    pub errors: Vec<EventError>,
}

/// Commit 1 to 10 events to the raw table.
#[utoipa::path(
    post,
    path = "/events",
    tag = "events",
    security(("api_key" = [])),
    request_body(content = Vec<EventIn>, description = "1 to 10 events, in the file format", content_type = "application/json"),
    responses(
        (status = 202, description = "all events durably committed to r_session_events", body = EventsAccepted),
        (status = 400, description = "the body is not valid JSON", body = Detail),
        (status = 401, description = "missing or wrong API key", body = Detail),
        (status = 413, description = "the body is larger than the limit", body = Detail),
        (status = 415, description = "the body is not application/json", body = Detail),
        (status = 422, description = "not an array of 1 to 10 events, or some events invalid (nothing written)", body = EventsRejected),
        (status = 503, description = "the lake could not commit now; nothing acknowledged, retry the batch", body = Detail),
    )
)]
pub async fn post_events(State(state): State<AppState>, body: Result<Json<Batch>, JsonRejection>) -> Response {
    match accept(&state, body).await {
        Ok(accepted) => (StatusCode::ACCEPTED, Json(accepted)).into_response(),
        Err(Refusal::Invalid(rejected)) => (StatusCode::UNPROCESSABLE_ENTITY, Json(rejected)).into_response(),
        Err(Refusal::Error(error)) => error.into_response(),
    }
}

/// The body: a JSON array whose elements are kept as the exact text the
/// client sent. Each element goes to the file parser as a line would, so a
/// repeated key is refused as in a file; parsed into `serde_json::Value`
/// first, the last of the two values would silently win.
type Batch = Vec<Box<RawValue>>;

enum Refusal {
    Invalid(EventsRejected),
    Error(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Error(error)
    }
}

async fn accept(state: &AppState, body: Result<Json<Batch>, JsonRejection>) -> Result<EventsAccepted, Refusal> {
    let Json(values) = body.map_err(ApiError::from)?;
    if values.is_empty() || values.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::unprocessable(format!(
            "a batch holds 1 to {MAX_EVENTS_PER_REQUEST} events, got {}",
            values.len()
        ))
        .into());
    }
    let mut events = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match parse_line(value.get().as_bytes()) {
            Ok(event) => events.push(event),
            Err(rejection) => errors.push(EventError {
                index,
                reason: rejection.reason.code().to_string(),
                message: client_message(value, rejection.reason, rejection.message),
            }),
        }
    }
    let metrics = state.metrics();
    if !errors.is_empty() {
        metrics.events_rejected.inc_by(errors.len() as u64);
        let detail = format!("{} of {} events are invalid; nothing was written", errors.len(), values.len());
        return Err(Refusal::Invalid(EventsRejected { detail, errors }));
    }
    let started = Instant::now();
    let count = events.len();
    let committed = state.events().append(events).await.map_err(|error| {
        tracing::error!(%error, "committing posted events failed");
        ApiError::unavailable(
            "the events could not be committed to the lake; nothing was acknowledged, retry the batch",
        )
    })?;
    metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
    metrics.events_accepted.inc_by(count as u64);
    Ok(EventsAccepted { accepted: count, raw_version: committed.raw_version, wal_sequence: committed.wal_sequence })
}

/// The parser's message, fit for a client. When an element is JSON the
/// parser can read but still refuses as `invalid_json` (a repeated key, a
/// wrong-typed field the event does not use), the parser's message quotes
/// the event as a Rust value: that is for the rejected table, not for
/// clients.
fn client_message(element: &RawValue, reason: RejectReason, message: String) -> String {
    let is_readable_json = || serde_json::from_str::<serde_json::Value>(element.get()).is_ok();
    if reason == RejectReason::InvalidJson && is_readable_json() {
        return "the event is not a well-formed event object (e.g. a repeated key, or a field of the wrong type)"
            .into();
    }
    message
}
