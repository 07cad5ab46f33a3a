//! The OpenAPI document's frame: title, description, tags and the API-key
//! scheme. Paths and schemas come from the handlers' annotations.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};

/// The document root.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessionlake",
        description = "Player sessions served from Cassandra, fed by a Delta Lake medallion (landing -> raw -> sessions).\n\n\
            Read endpoints keep the reference's paths and JSON shape, with optional paging (`page_size`, `page_token`). \
            `POST /events` commits 1 to 10 events durably to the raw table.\n\n\
            When API keys are configured, every route but /health, /ready, /docs and /openapi.json needs an `X-API-Key` header. \
            Errors are JSON `{\"detail\": \"...\"}`."
    ),
    tags(
        (name = "sessions", description = "Served sessions (Cassandra)"),
        (name = "events", description = "Live event ingest (Delta Lake raw table)"),
        (name = "operations", description = "Health, readiness, metrics"),
    ),
    modifiers(&ApiKeyScheme)
)]
pub struct ApiDoc;

/// Declares the `X-API-Key` header scheme.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "one of the keys in SESSIONLAKE_API_KEYS",
            ))),
        );
    }
}
