//! Security: API keys are never logged or echoed; path and query
//! parameters reach the store only as validated, typed values (no CQL
//! injection: the real store binds them to prepared statements, which the
//! Cassandra suite covers); no answer shows internals, not even a panic's.
//! That every configured key is compared, with no early exit, is tested
//! deterministically in `src/auth.rs`; how long a check takes is a
//! benchmark (`examples/key_check_timing.rs`), never a test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;
use sessionlake_api::store::{Committed, EventSink, SessionStore, StoreError, Unavailable};
use sessionlake_api::{ApiKeys, ApiSettings, AppState, ServeOptions, TokenSigner};
use sessionlake_cassandra::read::{Cursor, Page, StartedWindow};
use sessionlake_model::{Clock, Event};
use sha2::{Digest, Sha256};

use crate::fakes::*;
use crate::wire::{Conn, RawResponse, Server, assert_no_internals};

// Keys never logged or echoed.

/// The key clients are given; its core (`Hq2Xv9LmP4tR8w`) is what any
/// echo, escaped or encoded, would still show.
const RIGHT_KEY: &str = "sl_live_Hq2Xv9LmP4tR8wZ3_kY";
/// The right key with one character changed: looks like a key.
const WRONG_KEY: &str = "sl_live_Hq2Xv9LmP4tR8wZ4_kY";
/// Keys with characters that need escaping in JSON, URLs and logs.
const SPECIAL_KEYS: [&str; 2] = ["Qm7Tz2Kd \"quoted\" 'single' \\back {json} %27 <b>&amp;", "ключ-🔑-Zx81Qp;DROP--"];
/// Substrings any leak of one of the keys above would contain.
const KEY_CORES: [&str; 4] = ["Hq2Xv9LmP4tR8w", "Qm7Tz2Kd", "Zx81Qp", "ключ"];

fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Asserts that none of the keys shows in `text`, in any form.
fn assert_no_key(what: &str, text: &str) {
    let mut keys = vec![RIGHT_KEY, WRONG_KEY];
    keys.extend(SPECIAL_KEYS);
    for key in keys {
        assert!(!text.contains(key), "{what} shows the key {key:?}:\n{text}");
        assert!(!text.contains(&percent_encoded(key)), "{what} shows the key {key:?}, percent-encoded:\n{text}");
        assert!(!text.contains(&hex(&Sha256::digest(key.as_bytes()))), "{what} shows the digest of {key:?}:\n{text}");
    }
    for core in KEY_CORES {
        assert!(!text.contains(core), "{what} shows part of a key ({core:?}):\n{text}");
    }
}

fn whole_response(response: &RawResponse) -> String {
    let headers: Vec<String> = response.headers.iter().map(|(name, value)| format!("{name}: {value}")).collect();
    format!("{}\n{}\n{}", response.status, headers.join("\n"), response.text())
}

/// Path, method, header lines carrying the key, body, and the expected
/// status with the right key and with a wrong one.
type KeyedRequest<'a> = (String, &'a str, Vec<Vec<u8>>, Option<&'a str>, (u16, u16));

#[tokio::test]
async fn api_keys_are_never_logged_nor_echoed() {
    // Everything at every level, span fields included, from this thread:
    // the test's runtime is single-threaded, so the server logs here too.
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut configured = vec![RIGHT_KEY];
    configured.extend(SPECIAL_KEYS);
    let (router, _, sink) = app_with(Some(fixture_store()), &configured);
    let server = Server::start(router, ServeOptions::default()).await;
    let completed = format!("/models/completed-sessions/{}", player(1));
    // tracing caches per call site whether anyone listens; a test on another
    // thread hitting a call site for the first time while this subscriber
    // registers can leave it cached as "nobody" (an empty log here). Once
    // the request path's call sites are registered, a rebuild settles it.
    for path in ["/health", completed.as_str()] {
        let mut conn = Conn::open(server.addr).await;
        conn.send(format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
        conn.response().await.unwrap().unwrap();
    }
    tracing::callsite::rebuild_interest_cache();
    log.0.lock().unwrap().clear();
    let event =
        json!([{"event": "start", "ts": "2016-11-06T23:30:00", "session_id": "00000000-0000-4000-8000-000000000001",
                        "player_id": player(7), "country": "FI"}])
        .to_string();
    let content_length = format!("content-length: {}", event.len());
    let special_wrong = SPECIAL_KEYS[0].replace('Q', "q");
    let presented = [
        (RIGHT_KEY, true),
        (WRONG_KEY, false),
        (SPECIAL_KEYS[0], true),
        (SPECIAL_KEYS[1], true),
        (&special_wrong, false),
    ];
    let mut answers = 0;
    for (key, is_right) in presented {
        let header = |name: &str| {
            let mut line = format!("{name}: ").into_bytes();
            line.extend_from_slice(key.as_bytes());
            line
        };
        // Path, method, key headers, body; the status with the right key, with a wrong one.
        let requests: Vec<KeyedRequest> = vec![
            (completed.clone(), "GET", vec![header("x-api-key")], None, (200, 401)),
            ("/models/started_sessions/IT/3".into(), "GET", vec![header("X-API-Key")], None, (200, 401)),
            ("/events".into(), "POST", vec![header("x-api-key")], Some(&event), (202, 401)),
            ("/metrics".into(), "GET", vec![header("x-api-key")], None, (200, 401)),
            ("/nope".into(), "GET", vec![header("x-api-key")], None, (404, 401)),
            ("/health".into(), "GET", vec![header("x-api-key")], None, (200, 200)),
            // A key where it does not belong: in the query.
            (format!("{completed}?api_key={}", percent_encoded(key)), "GET", vec![], None, (401, 401)),
            // Twice: the first one counts.
            (completed.clone(), "GET", vec![header("x-api-key"), header("x-api-key")], None, (200, 401)),
        ];
        for (path, method, key_headers, body, (right_status, wrong_status)) in requests {
            let mut request = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n").into_bytes();
            for line in key_headers {
                request.extend_from_slice(&line);
                request.extend_from_slice(b"\r\n");
            }
            if let Some(body) = body {
                request.extend_from_slice(
                    format!("content-type: application/json\r\n{content_length}\r\n\r\n").as_bytes(),
                );
                request.extend_from_slice(body.as_bytes());
            } else {
                request.extend_from_slice(b"\r\n");
            }
            let mut conn = Conn::open(server.addr).await;
            conn.send(&request).await.unwrap();
            let response = conn.response().await.unwrap().unwrap();
            let what = format!("{method} {path} with {key:?}");
            let status = if is_right { right_status } else { wrong_status };
            assert_eq!(response.status, status, "{what}: {}", response.text());
            if status == 401 {
                assert_eq!(response.json(), json!({"detail": "a valid X-API-Key header is required"}), "{what}");
            }
            assert_no_key(&format!("the answer to {what}"), &whole_response(&response));
            answers += 1;
        }
    }
    server.stop(Duration::from_secs(5)).await;
    assert_eq!(sink.batches.lock().unwrap().len(), 3, "each right key posted once");

    let log = log.text();
    // The capture works: the requests, 401s among them, are in the log.
    assert!(log.contains("/models/completed-sessions") && log.contains("401"), "nothing captured:\n{log}");
    assert!(log.lines().count() >= answers, "{} lines for {answers} requests", log.lines().count());
    assert_no_key("the log", &log);
    // Nor does the configuration show them.
    let settings = ApiSettings { api_keys: ApiKeys::new(configured), ..ApiSettings::default() };
    assert_no_key("the settings' Debug output", &format!("{settings:?}"));
}

// No CQL injection.

/// A store that records every call it gets, then answers as the fixture.
#[derive(Default)]
struct RecordingStore {
    inner: FakeStore,
    player_ids: Mutex<Vec<String>>,
    windows: Mutex<Vec<StartedWindow>>,
    cursors: Mutex<Vec<Cursor>>,
}

impl SessionStore for RecordingStore {
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.ping()
    }

    fn completed(
        &self,
        player_id: String,
        cursor: Option<Cursor>,
        page_size: usize,
    ) -> BoxFuture<'_, Result<Page, StoreError>> {
        self.player_ids.lock().unwrap().push(player_id.clone());
        self.cursors.lock().unwrap().extend(cursor.clone());
        self.inner.completed(player_id, cursor, page_size)
    }

    fn started(
        &self,
        window: StartedWindow,
        cursor: Option<Cursor>,
        page_size: usize,
    ) -> BoxFuture<'_, Result<Page, StoreError>> {
        self.windows.lock().unwrap().push(window.clone());
        self.cursors.lock().unwrap().extend(cursor.clone());
        self.inner.started(window, cursor, page_size)
    }
}

/// The router over a store that records its calls (shared with the test).
fn recorded_app() -> (axum::Router, Arc<RecordingStore>) {
    let store = Arc::new(RecordingStore { inner: fixture_store(), ..RecordingStore::default() });
    let settings = ApiSettings {
        clock: Clock::fixed(chrono::DateTime::from_timestamp_millis(NOW_MS).unwrap()),
        token_signer: TokenSigner::new(*b"test secret"),
        ..ApiSettings::default()
    };
    let state = AppState::new(settings, Arc::new(FakeSink::default()));
    state.set_store(store.clone());
    (sessionlake_api::router(state), store)
}

#[tokio::test]
async fn quotes_and_cql_in_parameters_never_reach_the_store() {
    let (router, store) = recorded_app();
    let hostile = [
        "'",
        "''",
        "'; DROP TABLE api_completed_sessions; --",
        "' OR 1=1 --",
        "' OR '1'='1",
        "1 OR 1=1",
        "1; DROP KEYSPACE session_events",
        "SELECT * FROM api_completed_sessions ALLOW FILTERING",
        "\") OR token(player_id) > 0 --",
        "IT' AND country = 'FR",
        "IT'",
        "3'",
        "3; --",
        "3 OR 1=1",
        "3)",
        "IT;",
        "%27",
        "%2527",
        "3%27",
    ];
    // Values of the right length, so that only their characters refuse them.
    let padded_player = |text: &str| {
        let mut id = text.to_string();
        id.push_str(&"a".repeat(32usize.saturating_sub(id.len())));
        id.chars().take(32).collect::<String>()
    };
    let mut uris = Vec::new();
    for value in hostile {
        let encoded: String = value
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b == b'%' { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        uris.push((format!("/models/completed-sessions/{encoded}"), 422));
        uris.push((format!("/models/completed-sessions/{}", percent_encode_all(&padded_player(value))), 422));
        uris.push((format!("/models/started_sessions/{encoded}/3"), 422));
        uris.push((format!("/models/started_sessions/IT/{encoded}"), 422));
        uris.push((format!("/models/started_sessions/IT/3?page_size={encoded}"), 422));
        uris.push((format!("/models/completed-sessions/{}?page_size={encoded}", player(1)), 422));
        uris.push((format!("/models/started_sessions/IT/3?page_token={encoded}"), 400));
        uris.push((format!("/models/completed-sessions/{}?page_token={encoded}", player(1)), 400));
    }
    // A genuine token with a quote appended, and a CQL blob literal as id.
    let first = get(&router, "/models/started_sessions/IT/24?page_size=5").await.json();
    let token = first["next_page_token"].as_str().unwrap().to_string();
    uris.push((format!("/models/started_sessions/IT/24?page_token={token}%27"), 400));
    uris.push((format!("/models/started_sessions/IT/24?page_token={token}%27%20OR%201%3D1"), 400));
    uris.push(("/models/completed-sessions/0x0a2d12a1a7e145de8bae44c0c6e066".to_string(), 422));
    let calls_before = (store.player_ids.lock().unwrap().len(), store.windows.lock().unwrap().len());

    for (uri, status) in &uris {
        let answer = get(&router, uri).await;
        assert_eq!(answer.status.as_u16(), *status, "{uri}: {}", answer.text());
        assert!(answer.json()["detail"].is_string(), "{uri}");
        assert_no_internals(uri, &answer.text());
    }
    let calls_after = (store.player_ids.lock().unwrap().len(), store.windows.lock().unwrap().len());
    assert_eq!(calls_before, calls_after, "a refused request reached the store");

    // CQL keywords that are valid values are just values: two letters are a
    // country, bound as such (no quote, no statement can come of it).
    for country in ["OR", "IN", "BY", "to"] {
        let answer = get(&router, &format!("/models/started_sessions/{country}/3")).await;
        assert_eq!(answer.status, StatusCode::OK, "{country}");
    }
    // Upper-case hex ids arrive in the canonical lower case.
    get(&router, &format!("/models/completed-sessions/{}", "ABCDEF0123456789ABCDEF0123456789")).await;
    // Whatever reached the store has the shape of its type.
    let player_ids = store.player_ids.lock().unwrap();
    let windows = store.windows.lock().unwrap();
    assert!(player_ids.contains(&"abcdef0123456789abcdef0123456789".to_string()));
    assert!(windows.iter().any(|window| window.country == "OR"));
    for id in player_ids.iter() {
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id:?}");
    }
    for window in windows.iter() {
        assert!(window.country.len() == 2 && window.country.bytes().all(|b| b.is_ascii_uppercase()), "{window:?}");
    }
}

fn percent_encode_all(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

// No internals leaked.

#[tokio::test]
async fn the_openapi_document_shows_no_internals() {
    let (router, _) = app();
    let answer = get(&router, "/openapi.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_no_internals("/openapi.json", &answer.text());
}

/// A sink and a store that panic, with a message full of internals.
struct Panicking;

const PANIC_MESSAGE: &str =
    "secret at /home/dev/sessionlake/crates/api/src/routes/events.rs:42: called `Option::unwrap()` on a `None` value";

impl EventSink for Panicking {
    fn append(&self, _events: Vec<Event>) -> BoxFuture<'_, Result<Committed, Unavailable>> {
        async { panic!("{PANIC_MESSAGE}") }.boxed()
    }

    fn health(&self) -> Result<(), Unavailable> {
        panic!("{PANIC_MESSAGE}")
    }
}

impl SessionStore for Panicking {
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        panic!("{PANIC_MESSAGE}")
    }

    fn completed(&self, _: String, _: Option<Cursor>, _: usize) -> BoxFuture<'_, Result<Page, StoreError>> {
        panic!("{PANIC_MESSAGE}")
    }

    fn started(&self, _: StartedWindow, _: Option<Cursor>, _: usize) -> BoxFuture<'_, Result<Page, StoreError>> {
        async { panic!("{PANIC_MESSAGE}") }.boxed()
    }
}

#[tokio::test]
async fn a_panic_is_a_generic_500_that_shows_nothing_of_it() {
    let state = AppState::new(ApiSettings::default(), Arc::new(Panicking));
    state.set_store(Arc::new(Panicking));
    let router = sessionlake_api::router(state);
    let event = json!([{"event": "start", "ts": "2016-11-06T23:30:00", "session_id": "00000000-0000-4000-8000-000000000001",
                        "player_id": player(7), "country": "FI"}]);
    let requests = vec![
        Request::post("/events")
            .header("content-type", "application/json")
            .body(Body::from(event.to_string()))
            .unwrap(),
        Request::get(format!("/models/completed-sessions/{}", player(1))).body(Body::empty()).unwrap(),
        Request::get("/models/started_sessions/IT/3").body(Body::empty()).unwrap(),
        Request::get("/ready").body(Body::empty()).unwrap(),
    ];
    for request in requests {
        let what = request.uri().to_string();
        let answer = send(&router, request).await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{what}");
        assert_eq!(answer.json(), json!({"detail": "internal error"}), "{what}");
        assert_no_internals(&what, &answer.text());
        assert!(!answer.text().contains("secret"), "{what}");
    }
    // The server lives on.
    assert_eq!(get(&router, "/health").await.status, StatusCode::OK);
}
