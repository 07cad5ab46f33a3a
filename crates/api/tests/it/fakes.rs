//! In-memory stand-ins and request helpers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::FutureExt;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use scylla::value::CqlTimestamp;
use sessionlake_api::store::{Committed, EventSink, SessionStore, StoreError, Unavailable};
use sessionlake_api::{ApiKeys, ApiSettings, AppState, TokenSigner};
use sessionlake_cassandra::read::{COMPLETED_LIMIT, Cursor, Page, SessionItem, StartedWindow};
use sessionlake_model::{Clock, Event};
use tower::ServiceExt;

/// The service clock of the tests: 2016-11-07T00:00:00Z.
pub const NOW_MS: i64 = 1_478_476_800_000;

/// Sessions kept in memory; paging by offset (kept in `Cursor::skip`).
#[derive(Default)]
pub struct FakeStore {
    /// Completed sessions per player, newest first.
    pub completed: BTreeMap<String, Vec<SessionItem>>,
    /// Started sessions, any order.
    pub started: Vec<SessionItem>,
    /// Answer every call with this error (`None`: answer).
    pub failure: Option<StoreError>,
}

fn page_of(rows: Vec<SessionItem>, cursor: Option<Cursor>, page_size: usize) -> Page {
    let offset = cursor.map_or(0, |cursor| cursor.skip as usize);
    let end = (offset + page_size).min(rows.len());
    let next = (end < rows.len()).then_some(Cursor { partition: 0, state: None, skip: end as u32 });
    Page { items: rows[offset.min(end)..end].to_vec(), next }
}

impl SessionStore for FakeStore {
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let outcome = self.failure.clone().map_or(Ok(()), Err);
        async move { outcome }.boxed()
    }

    fn completed(
        &self,
        player_id: String,
        cursor: Option<Cursor>,
        page_size: usize,
    ) -> BoxFuture<'_, Result<Page, StoreError>> {
        let mut rows = self.completed.get(&player_id).cloned().unwrap_or_default();
        rows.truncate(COMPLETED_LIMIT);
        let outcome = self.failure.clone().map_or_else(|| Ok(page_of(rows, cursor, page_size)), Err);
        async move { outcome }.boxed()
    }

    fn started(
        &self,
        window: StartedWindow,
        cursor: Option<Cursor>,
        page_size: usize,
    ) -> BoxFuture<'_, Result<Page, StoreError>> {
        let mut rows: Vec<SessionItem> = self
            .started
            .iter()
            .filter(|row| row.country.as_deref() == Some(window.country.as_str()))
            .filter(|row| (window.from_ms..=window.to_ms).contains(&row.ts.0))
            .cloned()
            .collect();
        rows.sort_by(|a, b| b.ts.0.cmp(&a.ts.0).then(a.session_id.cmp(&b.session_id)));
        let outcome = self.failure.clone().map_or_else(|| Ok(page_of(rows, cursor, page_size)), Err);
        async move { outcome }.boxed()
    }
}

/// Records committed events.
#[derive(Default)]
pub struct FakeSink {
    /// Every committed batch.
    pub batches: Mutex<Vec<Vec<Event>>>,
    /// Set: the sink is down (its committer died) and says why.
    pub down: Mutex<Option<String>>,
}

impl EventSink for FakeSink {
    fn append(&self, events: Vec<Event>) -> BoxFuture<'_, Result<Committed, Unavailable>> {
        if let Some(why) = self.down.lock().unwrap().clone() {
            return async move { Err(Unavailable(why)) }.boxed();
        }
        let mut batches = self.batches.lock().unwrap();
        batches.push(events);
        let version = batches.len() as i64;
        async move { Ok(Committed::in_raw(version)) }.boxed()
    }

    fn health(&self) -> Result<(), Unavailable> {
        self.down.lock().unwrap().clone().map_or(Ok(()), |why| Err(Unavailable(why)))
    }
}

/// A player id of the fixtures.
pub fn player(n: u32) -> String {
    format!("{n:032x}")
}

/// A session item.
pub fn item(player: &str, n: u32, country: &str, ts_ms: i64) -> SessionItem {
    SessionItem {
        player_id: player.to_string(),
        session_id: format!("00000000-0000-4000-8000-{n:012x}"),
        country: Some(country.to_string()),
        ts: CqlTimestamp(ts_ms),
    }
}

/// A store with: player 1 has 30 completed sessions; IT has one session
/// started every 10 minutes over the last 30 hours; FR has none.
pub fn fixture_store() -> FakeStore {
    let mut store = FakeStore::default();
    let one = player(1);
    store.completed.insert(one.clone(), (0..30).map(|n| item(&one, n, "IT", NOW_MS - i64::from(n) * 60_000)).collect());
    store.started = (0..180).map(|n| item(&player(2), 1000 + n, "IT", NOW_MS - i64::from(n) * 600_000)).collect();
    store
}

/// The app, its state and the sink, with the given keys.
pub fn app_with(store: Option<FakeStore>, keys: &[&str]) -> (Router, AppState, Arc<FakeSink>) {
    let sink = Arc::new(FakeSink::default());
    let settings = ApiSettings {
        clock: Clock::fixed(chrono::DateTime::from_timestamp_millis(NOW_MS).unwrap()),
        api_keys: ApiKeys::new(keys.iter().copied()),
        token_signer: TokenSigner::new(*b"test secret"),
        ..ApiSettings::default()
    };
    let state = AppState::new(settings, sink.clone());
    if let Some(store) = store {
        state.set_store(Arc::new(store));
    }
    (sessionlake_api::router(state.clone()), state, sink)
}

/// The app over [`fixture_store`], without keys.
pub fn app() -> (Router, Arc<FakeSink>) {
    let (router, _, sink) = app_with(Some(fixture_store()), &[]);
    (router, sink)
}

/// A response's status and body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends a request through the router.
pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type =
        response.headers().get("content-type").map(|value| value.to_str().unwrap_or_default().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer { status, body, content_type }
}

/// GET a path.
pub async fn get(router: &Router, uri: &str) -> Answer {
    send(router, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// POST a JSON body.
pub async fn post_json(router: &Router, uri: &str, body: impl Into<Body>) -> Answer {
    send(router, Request::post(uri).header("content-type", "application/json").body(body.into()).unwrap()).await
}

/// The app over the fixture store with the given request timeout.
pub fn app_timing_out_after(request_timeout: Duration) -> (Router, Arc<FakeSink>) {
    let sink = Arc::new(FakeSink::default());
    let settings = ApiSettings {
        clock: Clock::fixed(chrono::DateTime::from_timestamp_millis(NOW_MS).unwrap()),
        api_keys: ApiKeys::default(),
        token_signer: TokenSigner::new(*b"test secret"),
        request_timeout,
        ..ApiSettings::default()
    };
    let state = AppState::new(settings, sink.clone());
    state.set_store(Arc::new(fixture_store()));
    (sessionlake_api::router(state), sink)
}

/// Everything a tracing subscriber writes, for the test to search.
#[derive(Clone, Default)]
pub struct CapturedLog(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Forgets what was written so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}
