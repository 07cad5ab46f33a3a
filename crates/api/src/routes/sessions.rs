//! The reference's two read endpoints, with paging.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use sessionlake_cassandra::read::{COMPLETED_LIMIT, Cursor, Page, SessionItem, StartedWindow};
use sessionlake_model::time::format_ts_micros;
use utoipa::{IntoParams, ToSchema};

use crate::cache::StartedKey;
use crate::error::{ApiError, Detail};
use crate::paging::PagePosition;
use crate::state::AppState;

/// Largest page of started sessions (and the default page size).
pub const MAX_STARTED_PAGE: usize = 1000;

/// Longest window of started sessions, in hours.
pub const MAX_HOURS: u32 = 24;

/// A session in a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionOut {
    /// 32 lowercase hexadecimal characters.
    #[schema(example = "0a2d12a1a7e145de8bae44c0c6e06629")]
    pub player_id: String,
    /// A UUID.
    #[schema(example = "4a0c43c9-c43a-42ff-ba55-67563dfa35d4")]
    pub session_id: String,
    /// ISO 3166-1 alpha-2 code (null if unknown).
    #[schema(example = "FI")]
    pub country: Option<String>,
    /// UTC, ISO 8601 without offset, microseconds (as in the event files):
    /// the start time of a started session, the end time of a completed one.
    #[schema(example = "2016-11-06T23:48:05.520000")]
    pub ts: String,
}

/// A page of sessions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionsPage {
    /// The sessions.
    pub items: Vec<SessionOut>,
    /// How many items this page holds.
    pub count: usize,
    /// Pass as `page_token` to get the next page; null on the last page.
    pub next_page_token: Option<String>,
}

/// Paging parameters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page (completed sessions: 1 to 20, default 20; started
    /// sessions: 1 to 1000, default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub page_size: Option<u32>,
    /// `next_page_token` of the previous page of the same query.
    pub page_token: Option<String>,
}

impl PageParams {
    fn page_size(&self, max: usize) -> Result<usize, ApiError> {
        match self.page_size {
            None => Ok(max),
            Some(size) if (1..=max as u32).contains(&size) => Ok(size as usize),
            Some(size) => Err(ApiError::unprocessable(format!("page_size must be between 1 and {max}, got {size}"))),
        }
    }
}

/// A player's last 20 completed sessions, newest first.
#[utoipa::path(
    get,
    path = "/models/completed-sessions/{player_id}",
    tag = "sessions",
    security(("api_key" = [])),
    params(
        ("player_id" = String, Path, description = "32 hexadecimal characters", example = "0a2d12a1a7e145de8bae44c0c6e06629"),
        PageParams,
    ),
    responses(
        (status = 200, description = "the sessions, newest end time first (at most 20 in all pages together)", body = SessionsPage),
        (status = 400, description = "page_token forged, damaged or from another query", body = Detail),
        (status = 401, description = "missing or wrong API key", body = Detail),
        (status = 422, description = "player_id or page_size out of bounds", body = Detail),
        (status = 500, description = "a failure retrying will not fix (logged)", body = Detail),
        (status = 503, description = "Cassandra unavailable; retry", body = Detail),
    )
)]
pub async fn completed_sessions(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<SessionsPage>, ApiError> {
    let Path(player_id) = path?;
    let Query(params) = query?;
    let player_id = valid_player_id(&player_id)?;
    let page_size = params.page_size(COMPLETED_LIMIT)?;
    let scope = format!("completed/{player_id}");
    let position = params.page_token.as_deref().map(|token| state.tokens().verify(&scope, token)).transpose()?;
    let page = state
        .store()?
        .completed(player_id, position.map(|position| position.cursor), page_size)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(page_out(&state, &scope, 0, page)))
}

/// Sessions started in a country in the last `hours` hours of the service clock, newest first.
///
/// With the micro-cache on (`--started-cache-seconds`), a first page may be
/// up to that old; its next-page token keeps its window.
#[utoipa::path(
    get,
    path = "/models/started_sessions/{country}/{hours}",
    tag = "sessions",
    security(("api_key" = [])),
    params(
        ("country" = String, Path, description = "ISO 3166-1 alpha-2 code, two letters", example = "IT"),
        ("hours" = u32, Path, description = "window length in hours, 1 to 24, ending at the service clock", minimum = 1, maximum = 24, example = 3),
        PageParams,
    ),
    responses(
        (status = 200, description = "the sessions, newest start time first", body = SessionsPage),
        (status = 400, description = "page_token forged, damaged or from another query", body = Detail),
        (status = 401, description = "missing or wrong API key", body = Detail),
        (status = 422, description = "country, hours (1..=24) or page_size out of bounds", body = Detail),
        (status = 500, description = "a failure retrying will not fix (logged)", body = Detail),
        (status = 503, description = "Cassandra unavailable; retry", body = Detail),
    )
)]
pub async fn started_sessions(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<PageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path((country, hours)) = path?;
    let Query(params) = query?;
    let country = valid_country(&country)?;
    let hours = valid_hours(&hours)?;
    let page_size = params.page_size(MAX_STARTED_PAGE)?;
    let position = match params.page_token.as_deref() {
        Some(token) => Some(state.tokens().verify(&started_scope(&country, hours), token)?),
        None => None,
    };
    match (position, state.started_cache().cloned()) {
        (None, Some(cache)) => {
            let key = StartedKey { country: country.clone(), hours, page_size };
            let read = move || {
                let (state, country) = (state.clone(), country.clone());
                async move {
                    let page = read_started(&state, country, hours, page_size, None).await?;
                    serde_json::to_vec(&page).map(Bytes::from).map_err(|error| {
                        tracing::error!(%error, "serializing a page");
                        ApiError::internal()
                    })
                }
            };
            let body = cache.get(key, read).await?;
            Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
        }
        (position, _) => Ok(Json(read_started(&state, country, hours, page_size, position).await?).into_response()),
    }
}

/// The scope page tokens of a started-sessions query are signed for.
fn started_scope(country: &str, hours: u32) -> String {
    format!("started/{country}/{hours}")
}

/// A page of started sessions: the first (window ending at the clock now)
/// or the one after `position` (in the first page's window).
async fn read_started(
    state: &AppState,
    country: String,
    hours: u32,
    page_size: usize,
    position: Option<PagePosition>,
) -> Result<SessionsPage, ApiError> {
    let scope = started_scope(&country, hours);
    // Later pages keep the first page's window, whatever the clock says now.
    let anchor_ms = position.as_ref().map_or_else(|| state.settings().clock.now().timestamp_millis(), |p| p.anchor_ms);
    let window = StartedWindow::last_hours(country, anchor_ms, hours);
    let page = state
        .store()?
        .started(window, position.map(|position| position.cursor), page_size)
        .await
        .map_err(ApiError::from)?;
    Ok(page_out(state, &scope, anchor_ms, page))
}

fn page_out(state: &AppState, scope: &str, anchor_ms: i64, page: Page) -> SessionsPage {
    let items: Vec<SessionOut> = page.items.into_iter().map(session_out).collect();
    let next_page_token =
        page.next.map(|cursor: Cursor| state.tokens().sign(scope, &PagePosition { anchor_ms, cursor }));
    SessionsPage { count: items.len(), items, next_page_token }
}

fn session_out(item: SessionItem) -> SessionOut {
    let micros = item.ts.0.saturating_mul(1000);
    let ts = if DateTime::from_timestamp_micros(micros).is_some() {
        format_ts_micros(micros)
    } else {
        item.ts.0.to_string()
    };
    SessionOut { player_id: item.player_id, session_id: item.session_id, country: item.country, ts }
}

/// A player id: 32 hexadecimal characters, answered in lower case.
fn valid_player_id(text: &str) -> Result<String, ApiError> {
    if text.len() == 32 && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(ApiError::unprocessable("player_id must be 32 hexadecimal characters"))
    }
}

/// A country code: two ASCII letters, answered in upper case.
fn valid_country(text: &str) -> Result<String, ApiError> {
    if text.len() == 2 && text.bytes().all(|byte| byte.is_ascii_alphabetic()) {
        Ok(text.to_ascii_uppercase())
    } else {
        Err(ApiError::unprocessable("country must be an ISO 3166-1 alpha-2 code (two letters)"))
    }
}

/// Hours: a whole number from 1 to 24.
fn valid_hours(text: &str) -> Result<u32, ApiError> {
    let bound = || ApiError::unprocessable(format!("hours must be a whole number between 1 and {MAX_HOURS}"));
    let hours: i64 = text.trim().parse().map_err(|_| bound())?;
    if (1..=i64::from(MAX_HOURS)).contains(&hours) { Ok(hours as u32) } else { Err(bound()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_whole_numbers_from_1_to_24() {
        assert_eq!(valid_hours("1").unwrap(), 1);
        assert_eq!(valid_hours("24").unwrap(), 24);
        for bad in ["0", "25", "-1", "abc", "1.5", "", "99999999999999999999"] {
            let error = valid_hours(bad).unwrap_err();
            assert_eq!(error.status, 422, "{bad}");
            assert!(error.detail.contains("between 1 and 24"), "{}", error.detail);
        }
    }

    #[test]
    fn ids_are_normalised_or_refused() {
        assert_eq!(valid_player_id("0A2D12A1A7E145DE8BAE44C0C6E06629").unwrap(), "0a2d12a1a7e145de8bae44c0c6e06629");
        assert!(valid_player_id("0a2d12a1a7e145de8bae44c0c6e0662").is_err());
        assert!(valid_player_id("' OR 1=1; DROP TABLE x; --aaaaaa").is_err());
        assert_eq!(valid_country("it").unwrap(), "IT");
        assert!(valid_country("ITA").is_err());
        assert!(valid_country("é").is_err());
    }
}
