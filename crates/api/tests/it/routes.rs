use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use sessionlake_api::store::StoreError;
use tower::ServiceExt;

use crate::fakes::*;

fn start_event(n: u32) -> Value {
    json!({"event": "start", "ts": "2016-11-06T23:30:00.000001", "session_id": format!("00000000-0000-4000-8000-{n:012x}"),
           "player_id": player(7), "country": "FI"})
}

#[tokio::test]
async fn health_answers_like_the_reference() {
    let (router, _) = app();
    let answer = get(&router, "/health").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json(), json!({"detail": "Healthy"}));
}

#[tokio::test]
async fn ready_is_503_until_the_store_is_connected_and_answers() {
    let (router, state, _) = app_with(None, &[]);
    assert_eq!(get(&router, "/ready").await.status, StatusCode::SERVICE_UNAVAILABLE);
    let answer = get(&router, &format!("/models/completed-sessions/{}", player(1))).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.json()["detail"].as_str().unwrap().contains("Cassandra"));
    state.set_store(std::sync::Arc::new(fixture_store()));
    assert_eq!(get(&router, "/ready").await.json(), json!({"detail": "Ready"}));

    let down = StoreError::unavailable("reading the serving tables: no node answered (down)");
    let (router, _, _) = app_with(Some(FakeStore { failure: Some(down), ..fixture_store() }), &[]);
    assert_eq!(get(&router, "/ready").await.status, StatusCode::SERVICE_UNAVAILABLE);
    let answer = get(&router, "/models/started_sessions/IT/3").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!answer.text().contains("down"), "internal messages stay in the log: {}", answer.text());
}

#[tokio::test]
async fn ready_is_503_naming_live_ingest_while_its_committer_is_down() {
    let (router, _, sink) = app_with(Some(fixture_store()), &[]);
    assert_eq!(get(&router, "/ready").await.status, StatusCode::OK);
    *sink.down.lock().unwrap() = Some("the live committer is down (panicked: boom at lake.rs:1); restarting".into());
    let answer = get(&router, "/ready").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let detail = answer.json()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("live event ingest"), "the detail names what is down: {detail}");
    assert!(!detail.contains("boom") && !detail.contains("lake.rs"), "internals stay in the log: {detail}");
    let posted = post_json(&router, "/events", json!([start_event(1)]).to_string()).await;
    assert_eq!(posted.status, StatusCode::SERVICE_UNAVAILABLE, "{}", posted.text());
    // Restarted: ready again, and events are taken.
    *sink.down.lock().unwrap() = None;
    assert_eq!(get(&router, "/ready").await.json(), json!({"detail": "Ready"}));
    assert_eq!(post_json(&router, "/events", json!([start_event(1)]).to_string()).await.status, StatusCode::ACCEPTED);
}

/// A request a client can retry gets 503 and `Retry-After`; a failure no
/// retry fixes (a schema that does not match the code, undecodable rows)
/// is a 500 that shows nothing of its cause, and is logged as an error
/// with it.
#[tokio::test]
async fn unavailability_is_503_with_retry_after_and_a_permanent_store_error_is_500() {
    // The test's runtime is single-threaded: the handlers log here.
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let cases = [
        (StoreError::unavailable("reading: request timed out after 2s"), 503, true, "WARN"),
        (StoreError::permanent("reading: column ts has type int, expected timestamp"), 500, false, "ERROR"),
    ];
    for (error, status, retry_after, level) in cases {
        let (router, _, _) = app_with(Some(FakeStore { failure: Some(error.clone()), ..fixture_store() }), &[]);
        for uri in [format!("/models/completed-sessions/{}", player(1)), "/models/started_sessions/IT/3".into()] {
            // See `api_keys_are_never_logged_nor_echoed`: once the call
            // sites are registered, a rebuild makes sure they log here.
            send(&router, Request::get(&uri).body(Body::empty()).unwrap()).await;
            tracing::callsite::rebuild_interest_cache();
            log.clear();
            let response = router.clone().oneshot(Request::get(&uri).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(response.status(), status, "{uri}: {error:?}");
            assert_eq!(response.headers().contains_key("retry-after"), retry_after, "{uri}: {error:?}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            let detail: Value = serde_json::from_slice(&body).unwrap();
            let detail = detail["detail"].as_str().unwrap();
            assert!(!detail.contains("column") && !detail.contains("timed out"), "{uri}: internals shown: {detail}");
            let logged = log.text();
            assert!(
                logged.lines().any(|line| line.contains(level) && line.contains(&error.message)),
                "{uri}: no {level} line with the cause in the log:\n{logged}"
            );
        }
    }
}

#[tokio::test]
async fn completed_sessions_are_the_last_20_newest_first_in_the_reference_shape() {
    let (router, _) = app();
    let answer = get(&router, &format!("/models/completed-sessions/{}", player(1))).await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    assert_eq!(body["count"], 20);
    assert_eq!(body["next_page_token"], Value::Null);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert_eq!(
        items[0],
        json!({"player_id": player(1), "session_id": "00000000-0000-4000-8000-000000000000", "country": "IT", "ts": "2016-11-07T00:00:00.000000"})
    );
    assert_eq!(items[19]["ts"], "2016-11-06T23:41:00.000000");
    // Upper-case ids are the same player.
    let upper = get(&router, &format!("/models/completed-sessions/{}", player(1).to_uppercase())).await;
    assert_eq!(upper.json(), body);
    // A player without sessions: an empty list, not an error.
    assert_eq!(get(&router, &format!("/models/completed-sessions/{}", player(9))).await.json()["count"], 0);
}

#[tokio::test]
async fn started_sessions_cover_exactly_the_window() {
    let (router, _) = app();
    for hours in [1u32, 3, 24] {
        let body = get(&router, &format!("/models/started_sessions/IT/{hours}")).await.json();
        // One session every 10 minutes, both window ends included.
        assert_eq!(body["count"], 6 * hours + 1, "{hours} hours");
        assert_eq!(body["items"][0]["ts"], "2016-11-07T00:00:00.000000");
    }
    assert_eq!(get(&router, "/models/started_sessions/it/2").await.json()["count"], 13);
    assert_eq!(get(&router, "/models/started_sessions/FR/24").await.json()["count"], 0);
}

#[tokio::test]
async fn hours_outside_1_to_24_are_422_naming_the_bound() {
    let (router, _) = app();
    for hours in ["0", "25", "-1", "abc", "1.5", "%20", "9999999999999999999999"] {
        let answer = get(&router, &format!("/models/started_sessions/IT/{hours}")).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "hours {hours}");
        assert_eq!(answer.json(), json!({"detail": "hours must be a whole number between 1 and 24"}));
    }
    for (uri, word) in [
        ("/models/started_sessions/ITA/3", "country"),
        ("/models/started_sessions/I1/3", "country"),
        ("/models/completed-sessions/xyz", "player_id"),
        ("/models/started_sessions/IT/3?page_size=0", "page_size"),
        ("/models/started_sessions/IT/3?page_size=1001", "page_size"),
        ("/models/started_sessions/IT/3?page_size=abc", "page_size"),
        ("/models/completed-sessions/00000000000000000000000000000001?page_size=21", "page_size"),
    ] {
        let answer = get(&router, uri).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert!(answer.json()["detail"].as_str().unwrap().contains(word), "{uri}: {}", answer.text());
    }
}

/// Walks every page of a query, returning the session ids in order.
async fn walk(router: &axum::Router, uri: &str, page_size: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..1000 {
        let mut page_uri = format!("{uri}?page_size={page_size}");
        if let Some(token) = &token {
            page_uri.push_str(&format!("&page_token={token}"));
        }
        let body = get(router, &page_uri).await.json();
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= page_size);
        assert_eq!(body["count"], items.len());
        ids.extend(items.iter().map(|item| item["session_id"].as_str().unwrap().to_string()));
        match body["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => return ids,
        }
    }
    panic!("paging never ended");
}

#[tokio::test]
async fn paging_walks_every_row_exactly_once() {
    let (router, _) = app();
    let uri = "/models/started_sessions/IT/24";
    let all = get(&router, uri).await.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["session_id"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(all.len(), 145);
    for page_size in [1, 7, 144, 145, 1000] {
        assert_eq!(walk(&router, uri, page_size).await, all, "page_size {page_size}");
    }
    let completed = format!("/models/completed-sessions/{}", player(1));
    assert_eq!(walk(&router, &completed, 6).await.len(), 20);
}

#[tokio::test]
async fn the_started_cache_answers_the_same_pages_and_counts_its_hits() {
    let (plain, _) = app();
    let sink = std::sync::Arc::new(FakeSink::default());
    let settings = sessionlake_api::ApiSettings {
        clock: sessionlake_model::Clock::fixed(chrono::DateTime::from_timestamp_millis(NOW_MS).unwrap()),
        token_signer: sessionlake_api::TokenSigner::new(*b"test secret"),
        started_cache_max_age: std::time::Duration::from_secs(60),
        ..sessionlake_api::ApiSettings::default()
    };
    let state = sessionlake_api::AppState::new(settings, sink);
    state.set_store(std::sync::Arc::new(fixture_store()));
    let cached = sessionlake_api::router(state);
    for uri in
        ["/models/started_sessions/IT/24", "/models/started_sessions/it/3?page_size=7", "/models/started_sessions/FR/2"]
    {
        let expected = get(&plain, uri).await;
        for _ in 0..3 {
            let answer = get(&cached, uri).await;
            assert_eq!(answer.status, StatusCode::OK, "{uri}");
            assert_eq!(answer.content_type.as_deref(), Some("application/json"), "{uri}");
            assert_eq!(answer.json(), expected.json(), "{uri}");
        }
    }
    // Later pages (read, never cached) follow the cached first page's token.
    assert_eq!(
        walk(&cached, "/models/started_sessions/IT/24", 10).await,
        walk(&plain, "/models/started_sessions/IT/24", 10).await
    );
    let metrics = get(&cached, "/metrics").await.text();
    assert!(metrics.contains("sessionlake_started_cache_total{outcome=\"miss\"} 4"), "{metrics}");
    assert!(metrics.contains("sessionlake_started_cache_total{outcome=\"hit\"} 6"), "{metrics}");
}

#[tokio::test]
async fn a_forged_or_foreign_page_token_is_a_400() {
    let (router, _) = app();
    let first = get(&router, "/models/started_sessions/IT/24?page_size=5").await.json();
    let token = first["next_page_token"].as_str().unwrap().to_string();
    assert_eq!(
        get(&router, &format!("/models/started_sessions/IT/24?page_size=5&page_token={token}")).await.status,
        200
    );
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 3;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for uri in [
        format!("/models/started_sessions/IT/24?page_token={forged}"),
        format!("/models/started_sessions/IT/23?page_token={token}"),
        format!("/models/started_sessions/FR/24?page_token={token}"),
        format!("/models/completed-sessions/{}?page_token={token}", player(1)),
        "/models/started_sessions/IT/24?page_token=garbage".to_string(),
        "/models/started_sessions/IT/24?page_token=".to_string(),
    ] {
        let answer = get(&router, &uri).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(answer.json()["detail"].as_str().unwrap().contains("page_token"));
    }
}

#[tokio::test]
async fn keys_guard_every_route_but_health_ready_and_docs() {
    let (router, _, _) = app_with(Some(fixture_store()), &["k1", "k2"]);
    let data = format!("/models/completed-sessions/{}", player(1));
    for uri in [data.as_str(), "/models/started_sessions/IT/3", "/metrics", "/nope"] {
        let answer = get(&router, uri).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(answer.json(), json!({"detail": "a valid X-API-Key header is required"}));
    }
    let with_key = |key: &str| Request::get(data.as_str()).header("x-api-key", key).body(Body::empty()).unwrap();
    assert_eq!(send(&router, with_key("k2")).await.status, StatusCode::OK);
    assert_eq!(send(&router, with_key("k3")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&router, with_key("")).await.status, StatusCode::UNAUTHORIZED);
    let post = Request::post("/events").header("content-type", "application/json").body(Body::from("[]")).unwrap();
    assert_eq!(send(&router, post).await.status, StatusCode::UNAUTHORIZED);
    for uri in ["/health", "/ready", "/openapi.json", "/docs/"] {
        assert_eq!(get(&router, uri).await.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn valid_events_are_committed_and_acknowledged() {
    let (router, sink) = app();
    let batch = json!([start_event(1), {"event": "end", "ts": "2016-11-06T23:45:00", "session_id": "00000000-0000-4000-8000-000000000001", "player_id": player(7)}]);
    let answer = post_json(&router, "/events", batch.to_string()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.json(), json!({"accepted": 2, "raw_version": 1}));
    // A retry is accepted again (the sink makes it harmless).
    assert_eq!(post_json(&router, "/events", batch.to_string()).await.status, StatusCode::ACCEPTED);
    let batches = sink.batches.lock().unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0], batches[1]);
    assert_eq!(batches[0][0].country_text(), Some("FI"));
}

#[tokio::test]
async fn a_batch_with_invalid_events_names_each_and_writes_nothing() {
    let (router, sink) = app();
    let batch = json!([
        start_event(1),
        {"event": "pause", "ts": "2016-11-06T23:30:00", "session_id": "00000000-0000-4000-8000-000000000002", "player_id": player(7)},
        start_event(3),
        {"event": "start", "ts": "yesterday", "session_id": "00000000-0000-4000-8000-000000000004", "player_id": player(7), "country": "FI"},
        "not an object",
    ]);
    let answer = post_json(&router, "/events", batch.to_string()).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = answer.json();
    assert_eq!(body["detail"], "3 of 5 events are invalid; nothing was written");
    let reasons: Vec<(u64, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, vec![(1, "unknown_event"), (3, "invalid_ts"), (4, "not_an_object")]);
    assert!(sink.batches.lock().unwrap().is_empty());
}

#[tokio::test]
async fn malformed_batches_are_4xx_with_a_clear_message() {
    let (router, sink) = app();
    let eleven = Value::Array((0..11).map(start_event).collect()).to_string();
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            Request::post("/events").header("content-type", "application/json").body(Body::from("[]")).unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "1 to 10 events, got 0",
        ),
        (
            Request::post("/events").header("content-type", "application/json").body(Body::from(eleven)).unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "1 to 10 events, got 11",
        ),
        (
            Request::post("/events")
                .header("content-type", "application/json")
                .body(Body::from("{\"event\":\"start\"}"))
                .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "JSON array",
        ),
        (
            Request::post("/events").header("content-type", "application/json").body(Body::from("[{")).unwrap(),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            Request::post("/events").header("content-type", "text/plain").body(Body::from("[]")).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            Request::post("/events").body(Body::from("[]")).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            Request::post("/events")
                .header("content-type", "application/json")
                .body(Body::from(vec![b' '; 70_000]))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "length limit",
        ),
        (
            // As a real client sends it: the length announced up front.
            Request::post("/events")
                .header("content-type", "application/json")
                .header("content-length", "70000")
                .body(Body::from(vec![b' '; 70_000]))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "length limit",
        ),
        (Request::get("/events").body(Body::empty()).unwrap(), StatusCode::METHOD_NOT_ALLOWED, "method"),
    ];
    for (request, status, words) in cases {
        let what = format!("{} {:?}", request.method(), request.headers().get("content-type"));
        let answer = send(&router, request).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        assert!(answer.json()["detail"].as_str().unwrap().contains(words), "{what}: {}", answer.text());
    }
    assert!(sink.batches.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_error() {
    let (router, _) = app();
    let document = get(&router, "/openapi.json").await.json();
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/events",
        "/models/completed-sessions/{player_id}",
        "/models/started_sessions/{country}/{hours}",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    let started = &paths["/models/started_sessions/{country}/{hours}"]["get"];
    for status in ["200", "400", "401", "422", "503"] {
        assert!(started["responses"].get(status).is_some(), "started sessions lacks {status}");
    }
    let hours = started["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "hours").unwrap();
    assert_eq!(hours["schema"]["minimum"], 1);
    assert_eq!(hours["schema"]["maximum"], 24);
    assert!(document["components"]["securitySchemes"]["api_key"].is_object());
    let docs = get(&router, "/docs/").await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.text().contains("swagger"), "the vendored Swagger UI");
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_events() {
    let (router, _) = app();
    get(&router, "/models/started_sessions/IT/3").await;
    get(&router, "/models/started_sessions/IT/0").await;
    post_json(&router, "/events", json!([start_event(1)]).to_string()).await;
    let answer = get(&router, "/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.content_type.clone().unwrap().starts_with("text/plain"));
    let text = answer.text();
    for line in [
        "sessionlake_http_requests_total{method=\"GET\",route=\"/models/started_sessions/{country}/{hours}\",status=\"200\"} 1",
        "sessionlake_http_requests_total{method=\"GET\",route=\"/models/started_sessions/{country}/{hours}\",status=\"422\"} 1",
        "sessionlake_events_accepted_total 1",
        "sessionlake_event_commit_seconds_count 1",
        "sessionlake_cassandra_connected 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn unknown_paths_are_a_json_404() {
    let (router, _) = app();
    let answer = get(&router, "/models/nothing").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json(), json!({"detail": "not found"}));
}

/// The label sets of one metric family in a `/metrics` text.
fn series_of(metrics: &str, family: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let prefix = format!("{family}{{");
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            // Route templates hold braces too: the labels end at the last one.
            let labels = &rest[..rest.rfind('}').expect("closing brace")];
            labels
                .split("\",")
                .map(|pair| {
                    let (name, value) = pair.split_once("=\"").expect("name=\"value\"");
                    (name.to_string(), value.trim_end_matches('"').to_string())
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn invented_methods_and_paths_cannot_grow_the_metric_series() {
    const KEY: &str = "metrics-test-key";
    let (router, _, _) = app_with(Some(fixture_store()), &[KEY]);
    let data = format!("/models/completed-sessions/{}", player(1));
    // Unauthenticated clients, then an authenticated one: 400 invented
    // methods and 400 invented paths (plus the raw path of a real route).
    for n in 0..200 {
        for key in [None, Some(KEY)] {
            let method = axum::http::Method::from_bytes(format!("INVENTED{n}").as_bytes()).unwrap();
            for uri in [data.clone(), format!("/nothing/{n}"), format!("/models/completed-sessions/{n:032x}")] {
                let mut request = Request::builder().method(method.clone()).uri(uri);
                if let Some(key) = key {
                    request = request.header("x-api-key", key);
                }
                let answer = send(&router, request.body(Body::empty()).unwrap()).await;
                assert!(answer.status.is_client_error(), "{}", answer.status);
            }
            let mut request = Request::get(format!("/invented/{n}"));
            if let Some(key) = key {
                request = request.header("x-api-key", key);
            }
            send(&router, request.body(Body::empty()).unwrap()).await;
        }
    }
    let metrics = send(&router, Request::get("/metrics").header("x-api-key", KEY).body(Body::empty()).unwrap()).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    let known_methods = ["GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "OTHER"];
    let known_routes = [
        "/models/completed-sessions/{player_id}",
        "/models/started_sessions/{country}/{hours}",
        "/events",
        "/health",
        "/ready",
        "/metrics",
        "/docs",
        "unmatched",
    ];
    for family in ["sessionlake_http_requests_total", "sessionlake_http_request_duration_seconds_count"] {
        let series = series_of(&text, family);
        assert!(!series.is_empty(), "no {family} in\n{text}");
        for labels in &series {
            assert!(known_methods.contains(&labels["method"].as_str()), "{family}: method label {labels:?}");
            assert!(known_routes.contains(&labels["route"].as_str()), "{family}: route label {labels:?}");
        }
        // Two routes (the data route and "unmatched") × two methods (OTHER
        // and GET) × at most three statuses (401, 404, 405).
        assert!(series.len() <= 12, "{family} has {} series after 1,600 invented requests", series.len());
    }
}
