//! `POST /events` against hostile bodies: each answer is 202 with exactly
//! the valid events handed to the sink, or a 4xx JSON `{"detail": …}`
//! (422 naming index and reason per bad event) with nothing handed over;
//! never a 5xx, never a crash. The fuzz test throws random bytes and a few
//! shapes at every route and checks only "no 5xx"; these pin the exact
//! answer to each kind of hostile input, and the ones a socket is needed
//! for (lying Content-Length, chunked bodies) go over real TCP.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};
use sessionlake_api::ServeOptions;
use sessionlake_model::{Event, parse_line};

use crate::fakes::*;
use crate::wire::{Conn, RawResponse, Server, assert_no_internals, chunked, head};

const SESSION: &str = "00000000-0000-4000-8000-0000000000aa";

/// A valid start event of session `n`.
fn start(n: u32) -> Value {
    json!({"event": "start", "ts": "2016-11-06T23:30:00.000001", "session_id": format!("00000000-0000-4000-8000-{n:012x}"),
           "player_id": player(7), "country": "FI"})
}

/// A valid start event with one field replaced (or added).
fn start_with(field: &str, value: Value) -> Value {
    let mut event = start(1);
    event[field] = value;
    event
}

/// The event the file parser makes of an element.
fn parsed(element: &Value) -> Event {
    parse_line(element.to_string().as_bytes()).unwrap()
}

/// Every event handed to the sink, in order.
fn committed(sink: &FakeSink) -> Vec<Event> {
    sink.batches.lock().unwrap().iter().flatten().copied().collect()
}

async fn post(router: &axum::Router, body: impl Into<Body>) -> Answer {
    post_json(router, "/events", body).await
}

/// Asserts an error answer: `status`, a JSON detail, no internals shown.
fn assert_error(what: &str, answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{what}: {}", answer.text());
    assert_eq!(answer.content_type.as_deref(), Some("application/json"), "{what}");
    assert!(answer.json()["detail"].is_string(), "{what}: {}", answer.text());
    assert_no_internals(what, &answer.text());
}

/// The (index, reason) pairs of a 422 for bad events.
fn reasons(what: &str, answer: &Answer) -> Vec<(u64, String)> {
    assert_error(what, answer, StatusCode::UNPROCESSABLE_ENTITY);
    let body = answer.json();
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("{what}: no errors list: {}", answer.text()));
    errors
        .iter()
        .map(|error| (error["index"].as_u64().unwrap(), error["reason"].as_str().unwrap().to_string()))
        .collect()
}

/// Posts `[text]` and asserts the API judges it as the file parser judges
/// the same text as a line: 202 with its event, or 422 with its reason
/// (and a message that shows no internals), nothing written.
async fn assert_judged_as_in_a_file(router: &axum::Router, sink: &FakeSink, text: &str) {
    let before = committed(sink).len();
    let answer = post(router, format!("[{text}]")).await;
    match parse_line(text.as_bytes()) {
        Ok(event) => {
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{text}: {}", answer.text());
            assert_eq!(committed(sink)[before..], [event], "{text}");
        }
        Err(line) => {
            assert_eq!(reasons(text, &answer), vec![(0, line.reason.code().to_string())], "{text}");
            assert_eq!(committed(sink).len(), before, "{text}: nothing written");
        }
    }
}

fn pairs(expected: &[(u64, &str)]) -> Vec<(u64, String)> {
    expected.iter().map(|(index, reason)| (*index, reason.to_string())).collect()
}

#[tokio::test]
async fn nul_bytes_are_data_or_syntax_errors() {
    let (router, sink) = app();
    // Escaped NUL inside the checked fields: each event is named with its reason.
    let batch = json!([
        start(1),
        start_with("event", json!("start\u{0}")),
        start_with("ts", json!("2016-11-06T23:30:00\u{0}")),
        start_with("session_id", json!(format!("{SESSION}\u{0}"))),
        start_with("player_id", json!(format!("\u{0}{}", &player(7)[1..]))),
        start_with("country", json!("F\u{0}")),
        {"event\u{0}": "start", "ts": "2016-11-06T23:30:00", "session_id": SESSION, "player_id": player(7), "country": "FI"},
    ]);
    let answer = post(&router, batch.to_string()).await;
    assert_eq!(
        reasons("escaped NULs", &answer),
        pairs(&[
            (1, "unknown_event"),
            (2, "invalid_ts"),
            (3, "invalid_session_id"),
            (4, "invalid_player_id"),
            (5, "invalid_country"),
            (6, "missing_field")
        ])
    );
    assert!(committed(&sink).is_empty());

    // A raw NUL byte is not JSON, inside a string or between tokens.
    let valid = json!([start(1)]).to_string();
    let in_string = valid.replacen("FI", "F\u{0}", 1);
    let between_tokens = valid.replacen(",", ",\u{0}", 1);
    for (what, body) in [("raw NUL in a string", in_string), ("raw NUL between tokens", between_tokens)] {
        assert_error(what, &post(&router, body).await, StatusCode::BAD_REQUEST);
    }
    assert!(committed(&sink).is_empty());

    // In a field nobody reads, a NUL is just data: the event is valid.
    let event = start_with("note", json!("a\u{0}b"));
    let answer = post(&router, json!([event]).to_string()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    assert_eq!(committed(&sink), vec![parsed(&event)]);
}

#[tokio::test]
async fn invalid_utf8_is_not_json_text() {
    let (router, sink) = app();
    let valid = json!([start(1)]).to_string().into_bytes();
    let country = valid.windows(4).position(|window| window == b"\"FI\"").unwrap() + 1;
    let mut bodies: Vec<(&str, Vec<u8>)> = Vec::new();
    for (what, bytes) in [
        ("a stray 0xFF", &b"\xFF"[..]),
        ("a Latin-1 letter", b"\xC9"),
        ("an overlong NUL", b"\xC0\x80"),
        ("an encoded surrogate", b"\xED\xA0\x80"),
        ("a lone continuation byte", b"\x80"),
        ("a cut sequence", b"\xE2\x82"),
    ] {
        let mut body = valid.clone();
        body.splice(country..country + 1, bytes.iter().copied());
        bodies.push((what, body));
    }
    let mut outside = valid.clone();
    outside.insert(1, 0xFF);
    bodies.push(("0xFF between tokens", outside));
    bodies.push(("UTF-16 with its BOM", {
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend(json!([start(1)]).to_string().encode_utf16().flat_map(u16::to_le_bytes));
        utf16
    }));
    for (what, body) in bodies {
        let answer = post(&router, body).await;
        assert_error(what, &answer, StatusCode::BAD_REQUEST);
        assert!(answer.json()["detail"].as_str().unwrap().contains("not valid JSON"), "{what}: {}", answer.text());
    }
    assert!(committed(&sink).is_empty());
}

#[tokio::test]
async fn deep_nesting_is_refused_without_crashing() {
    let (router, sink) = app();
    let limit = 64 * 1024;
    // 100,000 `[`: over the body limit before any parsing.
    let opened = "[".repeat(100_000);
    assert_error("100,000 [", &post(&router, opened.clone()).await, StatusCode::PAYLOAD_TOO_LARGE);
    let with_length = Request::post("/events")
        .header("content-type", "application/json")
        .header("content-length", opened.len())
        .body(Body::from(opened))
        .unwrap();
    assert_error("100,000 [ with its length", &send(&router, with_length).await, StatusCode::PAYLOAD_TOO_LARGE);
    // Inside the limit: as deep as it fits. A recursive parser without a
    // depth limit would overflow the stack here and abort the whole process
    // (not even a 500). Not JSON: 400; JSON but no event: 422 naming it.
    let depth = limit / 2 - 10;
    let cases = [
        ("unclosed arrays", "[".repeat(limit - 10), None),
        ("nested arrays", format!("{}{}", "[".repeat(depth), "]".repeat(depth)), Some("invalid_json")),
        (
            "nested objects",
            format!("[{}1{}]", "{\"a\":".repeat(depth / 6), "}".repeat(depth / 6)),
            Some("missing_field"),
        ),
        (
            "nested arrays as a field",
            format!("[{{\"event\":{}1{}}}]", "[".repeat(depth - 20), "]".repeat(depth - 20)),
            Some("invalid_json"),
        ),
    ];
    for (what, body, reason) in cases {
        assert!(body.len() <= limit, "{what}");
        let answer = post(&router, body).await;
        match reason {
            None => assert_error(what, &answer, StatusCode::BAD_REQUEST),
            Some(reason) => assert_eq!(reasons(what, &answer), pairs(&[(0, reason)])),
        }
    }
    assert!(committed(&sink).is_empty());
    // Deep nesting in a field nobody reads is skipped without recursing,
    // as in a file: the event is valid.
    let mut text = start(1).to_string();
    text.insert_str(1, &format!("\"x\":{}{},", "[".repeat(depth - 200), "]".repeat(depth - 200)));
    let answer = post(&router, format!("[{text}]")).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    assert_eq!(committed(&sink), vec![parsed(&start(1))]);
}

#[tokio::test]
async fn numbers_where_strings_belong_are_named_by_index() {
    let (router, sink) = app();
    let batch = json!([
        start(1),
        start_with("event", json!(1)),
        start_with("ts", json!(1_478_476_800)),
        start_with("session_id", json!(12345)),
        start_with("player_id", json!(7e31)),
        start_with("country", json!(49)),
        start_with("ts", json!(true)),
        start_with("ts", Value::Null),
        start_with("ts", json!([])),
        start_with("ts", json!({})),
    ]);
    let answer = post(&router, batch.to_string()).await;
    assert_eq!(
        reasons("wrong types", &answer),
        pairs(&[
            (1, "wrong_type"),
            (2, "wrong_type"),
            (3, "wrong_type"),
            (4, "wrong_type"),
            (5, "wrong_type"),
            (6, "wrong_type"),
            (7, "missing_field"),
            (8, "wrong_type"),
            (9, "wrong_type")
        ])
    );
    assert!(answer.json()["errors"][1]["message"].as_str().unwrap().contains("`ts`"), "{}", answer.text());
    // A number out of any range, and a wrong-typed field the event does
    // not use (country on an end): judged as the file parser judges them.
    let out_of_range = start(1).to_string().replace("\"2016-11-06T23:30:00.000001\"", "1e400");
    let end_with_numeric_country = json!({"event": "end", "ts": "2016-11-06T23:45:00", "session_id": SESSION,
                                          "player_id": player(7), "country": 49})
    .to_string();
    for text in [out_of_range, end_with_numeric_country] {
        assert_judged_as_in_a_file(&router, &sink, &text).await;
    }
}

fn micros(year: i32, month: u32, day: u32, hms: (u32, u32, u32), micro: u32) -> i64 {
    let naive =
        NaiveDate::from_ymd_opt(year, month, day).unwrap().and_hms_micro_opt(hms.0, hms.1, hms.2, micro).unwrap();
    Utc.from_utc_datetime(&naive).timestamp_micros()
}

#[tokio::test]
async fn far_future_and_offset_timestamps_are_read_as_utc_or_refused() {
    let (router, sink) = app();
    let accepted = [
        ("9999-12-31T23:59:59.999999", micros(9999, 12, 31, (23, 59, 59), 999_999)),
        ("9999-12-31T23:59:59Z", micros(9999, 12, 31, (23, 59, 59), 0)),
        ("9999-12-31T23:59:59+02:00", micros(9999, 12, 31, (21, 59, 59), 0)),
        ("2016-11-06T23:30:00+02:00", micros(2016, 11, 6, (21, 30, 0), 0)),
        ("2016-11-06T23:30:00-05:30", micros(2016, 11, 7, (5, 0, 0), 0)),
        ("2016-11-06T23:30:00.5Z", micros(2016, 11, 6, (23, 30, 0), 500_000)),
    ];
    let batch: Vec<Value> = accepted.iter().map(|(ts, _)| start_with("ts", json!(ts))).collect();
    let answer = post(&router, Value::Array(batch.clone()).to_string()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    assert_eq!(answer.json()["accepted"], accepted.len());
    let events = committed(&sink);
    assert_eq!(events, batch.iter().map(parsed).collect::<Vec<_>>());
    for ((ts, expected), event) in accepted.iter().zip(&events) {
        assert_eq!(event.ts_micros, *expected, "{ts}");
    }

    let refused = [
        "2016-11-06T23:30:00+25:00",
        "2016-11-06T23:30:00+24:00",
        "2016-11-06T23:30:00+02",
        "2016-11-06T23:30:00 +02:00",
        "10000-01-01T00:00:00",
        "9999-12-31T24:00:00",
        "2016-02-30T00:00:00",
        "2016-11-06T23:30:60",
        "2016-11-06",
    ];
    let batch: Vec<Value> = refused.iter().map(|ts| start_with("ts", json!(ts))).collect();
    let answer = post(&router, Value::Array(batch).to_string()).await;
    let expected: Vec<(u64, &str)> = (0..refused.len() as u64).map(|index| (index, "invalid_ts")).collect();
    assert_eq!(reasons("bad timestamps", &answer), pairs(&expected));
    assert_eq!(committed(&sink).len(), accepted.len(), "nothing more written");
}

#[tokio::test]
async fn a_bom_is_refused_and_crlf_whitespace_is_fine() {
    let (router, sink) = app();
    let valid = json!([start(1)]).to_string();
    for (what, body) in [
        ("a UTF-8 BOM", format!("\u{feff}{valid}")),
        ("a BOM inside the array", format!("[\u{feff}{}]", start(1))),
        ("NaN", valid.replacen("\"2016-11-06T23:30:00.000001\"", "NaN", 1)),
        ("a trailing comma", valid.replacen("}]", "},]", 1)),
        ("a comment", format!("/* x */{valid}")),
        ("a second document", format!("{valid}{valid}")),
    ] {
        let answer = post(&router, body).await;
        assert_error(what, &answer, StatusCode::BAD_REQUEST);
    }
    assert!(committed(&sink).is_empty());

    let crlf = format!(
        "\r\n[\r\n\t{{\r\n  \"event\" :\t\"start\" ,\r\n  \"ts\": \"2016-11-06T23:30:00.000001\",\r\n  \"session_id\": \"{SESSION}\",\r\n  \"player_id\": \"{}\",\r\n  \"country\": \"FI\"\r\n}}\r\n]\r\n",
        player(7)
    );
    let answer = post(&router, crlf).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    assert_eq!(committed(&sink), vec![parsed(&start_with("session_id", json!(SESSION)))]);
}

/// One valid event padded with whitespace to exactly `length` bytes.
fn padded_batch(length: usize) -> Vec<u8> {
    let event = start(1).to_string();
    let padding = length - event.len() - 2;
    format!("[{event}{}]", " ".repeat(padding)).into_bytes()
}

fn streamed(bytes: Vec<u8>) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(1000).map(|chunk| Ok(chunk.to_vec())).collect();
    Body::from_stream(futures::stream::iter(chunks))
}

#[tokio::test]
async fn bodies_at_the_limit_pass_and_one_byte_over_is_413() {
    let (router, state, sink) = app_with(Some(fixture_store()), &[]);
    let limit = state.settings().max_body_bytes;
    let with_length = |bytes: Vec<u8>| {
        Request::post("/events")
            .header("content-type", "application/json")
            .header("content-length", bytes.len())
            .body(Body::from(bytes))
            .unwrap()
    };
    let without_length = |bytes: Vec<u8>| {
        Request::post("/events").header("content-type", "application/json").body(streamed(bytes)).unwrap()
    };

    for (what, request) in [
        ("at the limit", with_length(padded_batch(limit))),
        ("at the limit, streamed", without_length(padded_batch(limit))),
    ] {
        let answer = send(&router, request).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{what}: {}", answer.text());
    }
    assert_eq!(committed(&sink), vec![parsed(&start(1)); 2]);

    let ten_megabytes = padded_batch(10 * 1024 * 1024);
    for (what, request) in [
        ("one byte over", with_length(padded_batch(limit + 1))),
        ("one byte over, streamed", without_length(padded_batch(limit + 1))),
        ("10 MB", with_length(ten_megabytes.clone())),
        ("10 MB, streamed", without_length(ten_megabytes)),
    ] {
        let answer = send(&router, request).await;
        assert_error(what, &answer, StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert_eq!(committed(&sink).len(), 2, "nothing more written");
}

#[tokio::test]
async fn a_repeated_key_is_refused_as_in_a_file() {
    let (router, sink) = app();
    let valid = start(1).to_string();
    let repeated = [
        valid.replacen("{", "{\"event\":\"end\",", 1),
        valid.replacen("{", "{\"event\":\"start\",", 1),
        valid.replacen("{", &format!("{{\"player_id\":\"{}\",", player(8)), 1),
        valid.replacen("{", "{\"country\":\"SE\",", 1),
    ];
    for text in &repeated {
        // The file parser refuses such a line; the API must not pick one of
        // the two values (serde_json's last one) where a file is refused.
        assert!(parse_line(text.as_bytes()).is_err(), "a file refuses {text}");
        assert_judged_as_in_a_file(&router, &sink, text).await;
    }
    assert!(committed(&sink).is_empty());
}

#[tokio::test]
async fn huge_strings_inside_the_limit_are_cut_short_in_messages() {
    let (router, sink) = app();
    let huge = "9".repeat(60_000);
    for (field, value, reason) in [
        ("event", huge.clone(), "unknown_event"),
        ("ts", format!("2016-{huge}"), "invalid_ts"),
        ("session_id", huge.clone(), "invalid_session_id"),
        ("player_id", huge.clone(), "invalid_player_id"),
        ("country", huge.clone(), "invalid_country"),
    ] {
        let answer = post(&router, json!([start_with(field, json!(value))]).to_string()).await;
        assert_eq!(reasons(field, &answer), pairs(&[(0, reason)]));
        assert!(answer.body.len() < 1024, "{field}: the message quotes {} bytes", answer.body.len());
    }
    assert!(committed(&sink).is_empty());
    let event = start_with("note", json!(huge));
    let answer = post(&router, json!([event]).to_string()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    assert_eq!(committed(&sink), vec![parsed(&event)]);
}

// Over TCP: what only a socket shows.

/// The app with a short request timeout, served on 127.0.0.1:0.
async fn serve_app(request_timeout: Duration) -> (Server, Arc<FakeSink>) {
    let (router, sink) = app_timing_out_after(request_timeout);
    (Server::start(router, ServeOptions::default()).await, sink)
}

const JSON: &str = "content-type: application/json";

async fn next(conn: &mut Conn, what: &str) -> RawResponse {
    tokio::time::timeout(Duration::from_secs(10), conn.response())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in 10 s"))
        .unwrap_or_else(|error| panic!("{what}: {error}"))
        .unwrap_or_else(|| panic!("{what}: closed without an answer"))
}

#[tokio::test]
async fn chunked_bodies_are_held_to_the_same_limit() {
    let (server, sink) = serve_app(Duration::from_secs(5)).await;
    let chunked_head = head("POST", "/events", &[JSON, "transfer-encoding: chunked"]);
    for (what, body, status) in [
        ("at the limit", padded_batch(64 * 1024), 202),
        ("one byte over", padded_batch(64 * 1024 + 1), 413),
        ("far over", padded_batch(1024 * 1024), 413),
    ] {
        let mut conn = Conn::open(server.addr).await;
        conn.send(&chunked_head).await.unwrap();
        // The server may refuse before reading it all: a failed write is fine.
        let _ = conn.send(&chunked(&body, 4096)).await;
        let answer = next(&mut conn, what).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        if status != 202 {
            answer.assert_json_detail(what);
        }
    }
    assert_eq!(committed(&sink), vec![parsed(&start(1))]);
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_content_length_shorter_than_the_body() {
    let (server, sink) = serve_app(Duration::from_secs(5)).await;
    let body = json!([start(1)]).to_string();

    // The length covers a whole batch; what follows is read as the next
    // request, which is garbage: hyper answers 400 and closes.
    let mut conn = Conn::open(server.addr).await;
    let length = format!("content-length: {}", body.len());
    conn.send(&head("POST", "/events", &[JSON, &length])).await.unwrap();
    conn.send(format!("{body}garbage that is no request\r\n\r\n").as_bytes()).await.unwrap();
    let first = next(&mut conn, "the covered batch").await;
    assert_eq!(first.status, 202, "{}", first.text());
    if let Ok(Some(second)) = conn.response().await {
        assert_eq!(second.status, 400, "the trailing garbage: {}", second.text());
    }
    assert!(conn.closed_within(Duration::from_secs(5)).await.is_some(), "the connection is closed after garbage");
    assert_eq!(committed(&sink), vec![parsed(&start(1))]);

    // The length cuts the batch in half: the half is not JSON.
    let mut conn = Conn::open(server.addr).await;
    let length = format!("content-length: {}", body.len() / 2);
    conn.send(&head("POST", "/events", &[JSON, &length])).await.unwrap();
    conn.send(body.as_bytes()).await.unwrap();
    let first = next(&mut conn, "half a batch").await;
    assert_eq!(first.status, 400, "{}", first.text());
    first.assert_json_detail("half a batch");
    if let Ok(Some(second)) = conn.response().await {
        assert!((400..500).contains(&second.status), "the other half: {} {}", second.status, second.text());
    }
    assert_eq!(committed(&sink).len(), 1, "nothing more written");
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_content_length_longer_than_the_body() {
    let request_timeout = Duration::from_secs(1);
    let (server, sink) = serve_app(request_timeout).await;
    let body = json!([start(1)]).to_string();
    let length = format!("content-length: {}", body.len() + 100);

    // The client waits for an answer that waits for the rest of the body:
    // the request timeout ends it with a 503, and the connection closes.
    let mut conn = Conn::open(server.addr).await;
    conn.send(&head("POST", "/events", &[JSON, &length])).await.unwrap();
    conn.send(body.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let answer = next(&mut conn, "a body that never ends").await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    answer.assert_json_detail("a body that never ends");
    assert!(started.elapsed() >= request_timeout - Duration::from_millis(100), "{:?}", started.elapsed());
    assert!(conn.closed_within(Duration::from_secs(5)).await.is_some(), "closed after the 503");

    // The client stops sending: the body is incomplete, a 400.
    let mut conn = Conn::open(server.addr).await;
    conn.send(&head("POST", "/events", &[JSON, &length])).await.unwrap();
    conn.send(body.as_bytes()).await.unwrap();
    conn.shutdown_write().await.unwrap();
    let answer = next(&mut conn, "a body cut by the client").await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    answer.assert_json_detail("a body cut by the client");
    assert!(committed(&sink).is_empty());
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn broken_framing_is_a_400() {
    let (server, sink) = serve_app(Duration::from_secs(5)).await;
    let body = json!([start(1)]).to_string();
    let length = format!("content-length: {}", body.len());
    let other_length = format!("content-length: {}", body.len() + 1);
    for (what, headers) in [
        ("two different lengths", vec![JSON, length.as_str(), other_length.as_str()]),
        ("a length that is no number", vec![JSON, "content-length: 12abc"]),
        ("a negative length", vec![JSON, "content-length: -1"]),
        ("an unknown transfer coding", vec![JSON, "transfer-encoding: gzip, chunked, x"]),
        // Both: chunked wins (RFC 9112), and the body is no chunked body.
        ("chunked and a length", vec![JSON, "transfer-encoding: chunked", length.as_str()]),
    ] {
        let mut conn = Conn::open(server.addr).await;
        conn.send(&head("POST", "/events", &headers)).await.unwrap();
        let _ = conn.send(body.as_bytes()).await;
        let _ = conn.shutdown_write().await;
        // hyper answers a broken head itself (an empty 400), the router a
        // broken body (a JSON 400).
        let answer = next(&mut conn, what).await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.text());
        assert_no_internals(what, &answer.text());
    }
    assert!(committed(&sink).is_empty());
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn ten_megabytes_over_tcp_are_413() {
    let (server, sink) = serve_app(Duration::from_secs(5)).await;
    let body = padded_batch(10 * 1024 * 1024);
    let std_stream = std::net::TcpStream::connect(server.addr).unwrap();
    let mut writer = std_stream.try_clone().unwrap();
    let length = format!("content-length: {}", body.len());
    let request = head("POST", "/events", &[JSON, &length]);
    // The writer keeps pushing while the answer is read; once the server
    // has refused and closed, its writes fail, which is expected.
    let pushing = std::thread::spawn(move || {
        use std::io::Write;
        let _ = writer.write_all(&request).and_then(|()| writer.write_all(&body));
    });
    std_stream.set_nonblocking(true).unwrap();
    let mut conn = Conn::from_stream(tokio::net::TcpStream::from_std(std_stream).unwrap());
    let answer = next(&mut conn, "10 MB").await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    answer.assert_json_detail("10 MB");
    drop(conn);
    pushing.join().unwrap();
    assert!(committed(&sink).is_empty());
    server.stop(Duration::from_secs(5)).await;
}
