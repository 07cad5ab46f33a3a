//! The API's one error type: a status and a `{"detail": ...}` body.
//!
//! Clients see a short, stable message; what went wrong inside (a Cassandra
//! or Delta error) goes to the log only, so no internals leak.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sessionlake_cassandra::error::ErrorKind;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct Detail {
    /// What went wrong, for a human.
    #[schema(example = "hours must be between 1 and 24")]
    pub detail: String,
}

/// An error answer: a status and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The client-facing message.
    pub detail: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into() }
    }

    /// 400: a malformed request (e.g. a forged page token).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401: a missing or wrong API key.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "a valid X-API-Key header is required")
    }

    /// 404: no such route.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found")
    }

    /// 422: a well-formed request with unusable values.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 503: a dependency (Cassandra, the lake) cannot answer now; retry later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    /// 500: something retrying will not fix; the cause goes to the log only.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<StoreError> for ApiError {
    /// Unavailability is a 503 the client may retry; anything else (the
    /// schema does not match the code, rows cannot be decoded) is a 500,
    /// logged as an error with its cause: retrying would not help.
    fn from(error: StoreError) -> Self {
        match error.kind {
            ErrorKind::Unavailable => {
                tracing::warn!(%error, "serving store unavailable");
                Self::unavailable("Cassandra is unavailable; retry shortly")
            }
            ErrorKind::Permanent => {
                tracing::error!(%error, "serving store read failed");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(Detail { detail: self.detail })).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the body must be JSON (Content-Type: application/json)")
            }
            JsonRejection::JsonSyntaxError(error) => {
                Self::bad_request(format!("the body is not valid JSON: {}", error.body_text_cause()))
            }
            JsonRejection::JsonDataError(error) => Self::unprocessable(format!(
                "the body must be a JSON array of event objects: {}",
                error.body_text_cause()
            )),
            JsonRejection::BytesRejection(error) => Self::new(error.status(), error.body_text()),
            other => Self::new(other.status(), other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::unprocessable(format!("invalid query parameters: {}", rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::unprocessable(format!("invalid path parameters: {}", rejection.body_text()))
    }
}

/// Text of a serde error without the "Failed to ..." prefix axum adds.
trait CauseText {
    fn body_text_cause(&self) -> String;
}

impl<T: std::error::Error> CauseText for T {
    fn body_text_cause(&self) -> String {
        let mut source: &dyn std::error::Error = self;
        while let Some(next) = source.source() {
            source = next;
        }
        source.to_string()
    }
}
