//! The state every handler shares: settings, the store (once connected),
//! the event sink, metrics.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sessionlake_model::clock::Clock;

use crate::auth::ApiKeys;
use crate::cache::StartedCache;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::paging::TokenSigner;
use crate::store::{SharedSink, SharedStore};

/// The API's settings (built from the one CLI config by the binary).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The service clock ("last X hours" is relative to it).
    pub clock: Clock,
    /// Keys required by every route but /health, /ready and the docs.
    pub api_keys: ApiKeys,
    /// Signs page tokens.
    pub token_signer: TokenSigner,
    /// Longest a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Oldest a cached first page of started sessions may be (zero: no
    /// cache; see [`crate::cache`]).
    pub started_cache_max_age: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            clock: Clock::real(),
            api_keys: ApiKeys::default(),
            token_signer: TokenSigner::random(),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
            started_cache_max_age: Duration::ZERO,
        }
    }
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ApiSettings,
    store: OnceLock<SharedStore>,
    events: SharedSink,
    metrics: Metrics,
    started_cache: Option<StartedCache>,
}

impl AppState {
    /// State with no store yet ([`AppState::set_store`] once connected).
    pub fn new(settings: ApiSettings, events: SharedSink) -> Self {
        let metrics = Metrics::new();
        let started_cache = StartedCache::new(settings.started_cache_max_age, metrics.started_cache.clone());
        Self { inner: Arc::new(Inner { settings, store: OnceLock::new(), events, metrics, started_cache }) }
    }

    /// Installs the store (the first call wins); data routes answer 503 until then.
    pub fn set_store(&self, store: SharedStore) {
        if self.inner.store.set(store).is_ok() {
            self.inner.metrics.cassandra_connected.set(1);
        }
    }

    /// The store, or 503 while it is not connected.
    pub fn store(&self) -> Result<&SharedStore, ApiError> {
        self.inner.store.get().ok_or_else(|| ApiError::unavailable("Cassandra is not connected yet; retry shortly"))
    }

    /// The event sink.
    pub fn events(&self) -> &SharedSink {
        &self.inner.events
    }

    /// The settings.
    pub fn settings(&self) -> &ApiSettings {
        &self.inner.settings
    }

    /// The configured API keys.
    pub fn api_keys(&self) -> &ApiKeys {
        &self.inner.settings.api_keys
    }

    /// The page-token signer.
    pub fn tokens(&self) -> &TokenSigner {
        &self.inner.settings.token_signer
    }

    /// The micro-cache of first pages of started sessions, if enabled.
    pub fn started_cache(&self) -> Option<&StartedCache> {
        self.inner.started_cache.as_ref()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}
