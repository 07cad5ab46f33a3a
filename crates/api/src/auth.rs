//! API keys: `X-API-Key` checked in constant time against every configured
//! key. Keys are kept only as SHA-256 digests, so they are never logged or
//! echoed, and comparing digests makes the time independent of where (or
//! whether) the key differs, and of its length.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::error::ApiError;
use crate::state::AppState;

/// The header clients send their key in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Paths anyone may call, with or without a key.
const PUBLIC_PATHS: [&str; 3] = ["/health", "/ready", "/openapi.json"];

/// The configured API keys (none: the API is open).
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} configured)", self.digests.len())
    }
}

impl ApiKeys {
    /// Keys from a list; blank entries are ignored.
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let digests = keys
            .into_iter()
            .map(|key| key.as_ref().trim().to_string())
            .filter(|key| !key.is_empty())
            .map(|key| Sha256::digest(key.as_bytes()).into())
            .collect();
        Self { digests }
    }

    /// Keys from a comma-separated list (as in `SESSIONLAKE_API_KEYS`) or a
    /// file holding one key per line or comma-separated.
    pub fn parse(text: &str) -> Self {
        Self::new(text.split([',', '\n', '\r']))
    }

    /// Whether any key is configured (else every route is open).
    pub fn is_enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Whether `presented` is one of the keys. Every key is compared, in
    /// constant time: no early exit reveals how much of a guess was right.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        self.accepts_with(presented, |key, digest| key.ct_eq(digest))
    }

    /// [`ApiKeys::accepts`] with the digest comparison passed in, so that
    /// the tests can count the comparisons. The results are combined with
    /// `|` on [`Choice`], never a branch: which key matched, or whether any
    /// did, changes nothing in what runs.
    fn accepts_with(&self, presented: &[u8], mut equal: impl FnMut(&[u8; 32], &[u8; 32]) -> Choice) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut matched = Choice::from(0);
        for key in &self.digests {
            matched |= equal(key, &digest);
        }
        matched.into()
    }
}

/// Whether a path is open without a key.
fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path) || path == "/docs" || path.starts_with("/docs/")
}

/// Middleware: 401 unless the route is public or the request carries a key.
pub async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let keys = state.api_keys();
    if !keys.is_enabled() || is_public(request.uri().path()) {
        return Ok(next.run(request).await);
    }
    let presented = request.headers().get(API_KEY_HEADER).map(|value| value.as_bytes());
    match presented {
        Some(key) if keys.accepts(key) => Ok(next.run(request).await),
        _ => Err(ApiError::unauthorized()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_configured_key_and_nothing_else() {
        let keys = ApiKeys::parse("alpha, beta ,,");
        assert_eq!(keys.digests.len(), 2);
        assert!(keys.is_enabled());
        assert!(!ApiKeys::parse(" , ").is_enabled());
        assert!(keys.accepts(b"alpha"));
        assert!(keys.accepts(b"beta"));
        assert!(!keys.accepts(b" beta "));
        assert!(!keys.accepts(b"alph"));
        assert!(!keys.accepts(b""));
    }

    /// A configured digest and the presented one, as compared.
    type Comparison = ([u8; 32], [u8; 32]);

    /// Every `accepts_with` comparison, in order.
    fn comparisons(keys: &ApiKeys, presented: &[u8]) -> (bool, Vec<Comparison>) {
        let mut seen = Vec::new();
        let accepted = keys.accepts_with(presented, |key, digest| {
            seen.push((*key, *digest));
            key.ct_eq(digest)
        });
        (accepted, seen)
    }

    /// Deterministic: the timing itself is measured by
    /// `cargo run --release -p sessionlake-api --example key_check_timing`.
    #[test]
    fn every_configured_key_is_compared_whichever_matches() {
        let many: Vec<String> = (0..256).map(|n| format!("key-{n:03}")).collect();
        let keys = ApiKeys::new(&many);
        let long_guess = "k".repeat(16 * 1024);
        let cases: [(&str, bool); 6] = [
            (&many[0], true),
            (&many[128], true),
            (&many[255], true),
            ("key-256", false),
            ("", false),
            (&long_guess, false),
        ];
        for (presented, expected) in cases {
            let (accepted, seen) = comparisons(&keys, presented.as_bytes());
            assert_eq!(accepted, expected, "{presented:.20}");
            assert_eq!(accepted, keys.accepts(presented.as_bytes()), "the seam is what `accepts` runs");
            // Every key, in order, whether the first, the last or none matched.
            let compared: Vec<[u8; 32]> = seen.iter().map(|(key, _)| *key).collect();
            assert_eq!(compared, keys.digests, "{presented:.20}: not every key was compared");
            // Always against the presented key's 32-byte digest: the
            // compared length never depends on the guess.
            let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            assert!(seen.iter().all(|(_, compared)| *compared == digest), "{presented:.20}");
        }
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let keys = ApiKeys::new(["s3cret-key"]);
        assert_eq!(format!("{keys:?}"), "ApiKeys(1 configured)");
    }

    #[test]
    fn docs_health_ready_and_the_openapi_document_are_public() {
        for path in ["/health", "/ready", "/docs", "/docs/", "/docs/swagger-ui.css", "/openapi.json"] {
            assert!(is_public(path), "{path}");
        }
        for path in ["/models/completed-sessions/x", "/events", "/metrics", "/docsx", "/health/x"] {
            assert!(!is_public(path), "{path}");
        }
    }
}
