use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use proptest::prelude::*;

use crate::fakes::*;

/// Percent-encodes arbitrary bytes into a path segment or query value.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("IT".to_string()),
        Just("24".to_string()),
        Just("0".to_string()),
        Just(player(1)),
        Just(encode(b"' OR 1=1; DROP TABLE x; --")),
        "[a-zA-Z0-9]{0,40}",
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| encode(&bytes)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    (0..5usize, segment(), segment(), segment()).prop_map(|(shape, a, b, c)| match shape {
        0 => format!("/models/started_sessions/{a}/{b}"),
        1 => format!("/models/completed-sessions/{a}"),
        2 => format!("/models/started_sessions/{a}/{b}/{c}"),
        3 => format!("/{a}/{b}"),
        _ => format!("/events/{a}"),
    })
}

fn query() -> impl Strategy<Value = String> {
    (segment(), segment(), prop::collection::vec(any::<u8>(), 0..200))
        .prop_map(|(size, token, raw)| format!("?page_size={}&page_token={}&x={}", size, token, encode(&raw)))
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        Just(b"[{\"event\":\"start\",\"ts\":\"9999-12-31T23:59:59\",\"session_id\":\"00000000-0000-4000-8000-000000000001\",\"player_id\":\"00000000000000000000000000000007\",\"country\":\"FI\"}]".to_vec()),
        Just(format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes()),
        Just(b"[1, null, true, \"x\", {}, [], 1e400]".to_vec()),
        "\\[\\{\"event\":\"(start|end)\",\"ts\":\"[0-9T:.\\-]{0,30}\",\"session_id\":\"[0-9a-f\\-]{0,40}\",\"player_id\":\"[0-9a-f]{0,34}\"\\}\\]".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// No path, parameter or body makes the API answer 5xx, except 503
    /// while the store is not connected.
    #[test]
    fn no_input_gets_a_5xx(
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT), Just(Method::DELETE)],
        path in path(),
        query in query(),
        body in body(),
        json_type in any::<bool>(),
        connected in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (router, _, _) = app_with(connected.then(fixture_store), &[]);
            let uri = format!("{path}{query}");
            let mut request = Request::builder().method(method).uri(&uri);
            if json_type {
                request = request.header("content-type", "application/json");
            }
            let answer = send(&router, request.body(Body::from(body)).unwrap()).await;
            let allowed = answer.status.as_u16() < 500 || (!connected && answer.status == StatusCode::SERVICE_UNAVAILABLE);
            prop_assert!(allowed, "{uri} -> {} {}", answer.status, answer.text());
            // Every answer but the docs is JSON with a detail when it is an error.
            if answer.status.as_u16() >= 400 {
                prop_assert!(answer.json()["detail"].is_string(), "{uri} -> {}", answer.text());
            }
            Ok(())
        })?;
    }
}
