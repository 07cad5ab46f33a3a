//! The server under connection-level abuse, over real TCP: slow clients
//! (slow loris on the head, slow bodies) are cut off and do not slow down
//! anyone else; a thousand concurrent connections are all answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionlake_api::{HEADER_READ_TIMEOUT, ServeOptions};

use crate::fakes::*;
use crate::wire::{Conn, Server, head};

/// How a slow client's connection ended.
#[derive(Debug)]
struct Ending {
    /// From connecting to the server closing the connection; `None`: still
    /// open when the client gave up.
    closed_after: Option<Duration>,
    /// What the server sent before closing.
    answer: Option<u16>,
}

/// Sends `prefix`, then one byte of `trickle` every 100 ms (cycling), until
/// the server closes the connection or `give_up` has passed.
async fn trickle(addr: std::net::SocketAddr, prefix: Vec<u8>, trickle: &'static [u8], give_up: Duration) -> Ending {
    let started = Instant::now();
    let mut conn = Conn::open(addr).await;
    let _ = conn.send(&prefix).await;
    let mut bytes = trickle.iter().cycle();
    while started.elapsed() < give_up {
        if conn.closed_within(Duration::from_millis(100)).await.is_some() {
            let answer = conn.response().await.ok().flatten().map(|response| response.status);
            return Ending { closed_after: Some(started.elapsed()), answer };
        }
        if let Some(byte) = bytes.next() {
            let _ = conn.send(&[*byte]).await;
        }
    }
    Ending { closed_after: None, answer: None }
}

/// A GET on a fresh connection: its status and how long it took.
async fn timed_get(addr: std::net::SocketAddr, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut conn = Conn::open(addr).await;
    conn.send(&head("GET", path, &["connection: close"])).await.unwrap();
    let response = conn.response().await.unwrap().unwrap();
    (response.status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_cut_off_and_never_hold_up_others() {
    let header_timeout = Duration::from_secs(2);
    let (router, _) = app_timing_out_after(Duration::from_secs(10));
    let server = Server::start(router, ServeOptions { header_read_timeout: header_timeout }).await;
    let give_up = header_timeout + Duration::from_secs(8);
    let mut slow = Vec::new();
    for n in 0..50 {
        let (prefix, bytes): (Vec<u8>, &'static [u8]) = match n % 5 {
            // Connects and says nothing at all.
            0 => (Vec::new(), b""),
            // A head that never ends, one byte every 100 ms.
            1 => (Vec::new(), b"GET /health HTTP/1.1\r\nhost: test\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            // The same after a whole request line.
            _ => (b"GET /health HTTP/1.1\r\n".to_vec(), b"x-a: b\r\n"),
        };
        slow.push(tokio::spawn(trickle(server.addr, prefix, bytes, give_up)));
    }
    // A keep-alive connection that answered once and then idles.
    let mut idle = Conn::open(server.addr).await;
    idle.send(&head("GET", "/health", &[])).await.unwrap();
    assert_eq!(idle.response().await.unwrap().unwrap().status, 200);
    let idle_since = Instant::now();

    // Meanwhile everyone else is served at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    for n in 0..20 {
        let path = if n % 2 == 0 { "/health".to_string() } else { "/models/started_sessions/IT/3".to_string() };
        let (status, took) = timed_get(server.addr, &path).await;
        assert_eq!(status, 200, "{path}");
        slowest = slowest.max(took);
    }
    assert!(slowest < Duration::from_secs(1), "a request took {slowest:?} while slow clients were connected");

    // And every slow client is cut off once the header timeout has passed.
    let mut closed_after = Vec::new();
    for (n, client) in slow.into_iter().enumerate() {
        let ending = client.await.unwrap();
        let after = ending.closed_after.unwrap_or_else(|| panic!("slow client {n} still connected after {give_up:?}"));
        // hyper closes without a word; a 408 would do as well.
        assert!(ending.answer.is_none() || ending.answer == Some(408), "slow client {n}: {ending:?}");
        closed_after.push(after);
    }
    closed_after.sort();
    let idle_closed = idle.closed_within(give_up).await.map(|_| idle_since.elapsed());
    assert!(idle_closed.is_some(), "an idle keep-alive connection is closed too");
    eprintln!(
        "slow clients closed after {:?} (first) .. {:?} (last); idle keep-alive after {:?}; slowest other request {slowest:?}",
        closed_after[0],
        closed_after[closed_after.len() - 1],
        idle_closed.unwrap()
    );
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_request_timeout_gets_a_503_and_is_cut_off() {
    let request_timeout = Duration::from_secs(1);
    let (router, sink) = app_timing_out_after(request_timeout);
    let server = Server::start(router, ServeOptions::default()).await;
    let give_up = request_timeout + Duration::from_secs(8);
    let mut slow = Vec::new();
    for _ in 0..10 {
        let prefix = head("POST", "/events", &["content-type: application/json", "content-length: 400"]);
        slow.push(tokio::spawn(trickle(server.addr, prefix, b"[{\"event\":\"start\",     ", give_up)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, took) = timed_get(server.addr, "/health").await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "{took:?}");
    for client in slow {
        let ending = client.await.unwrap();
        let after = ending.closed_after.unwrap_or_else(|| panic!("a slow body still connected after {give_up:?}"));
        assert_eq!(ending.answer, Some(503), "{ending:?}");
        assert!(after >= request_timeout, "answered after {after:?}");
    }
    assert!(sink.batches.lock().unwrap().is_empty());
    server.stop(Duration::from_secs(5)).await;
}

/// `serve` itself (the binary's path), with its default header timeout:
/// on a paused clock, so waiting 30 s takes no time.
#[tokio::test(start_paused = true)]
async fn serve_cuts_off_a_slow_loris_after_its_default_header_timeout() {
    let (router, _) = app_timing_out_after(Duration::from_secs(10));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sessionlake_api::serve(listener, router, std::future::pending()));
    let mut conn = Conn::open(addr).await;
    conn.send(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let started = tokio::time::Instant::now();
    let give_up = HEADER_READ_TIMEOUT * 4;
    loop {
        if conn.closed_within(Duration::from_millis(100)).await.is_some() {
            break;
        }
        assert!(started.elapsed() < give_up, "a slow loris is still connected after {give_up:?}");
        let _ = conn.send(b"x").await;
    }
    let held = started.elapsed();
    assert!(
        held >= HEADER_READ_TIMEOUT - Duration::from_secs(1) && held <= HEADER_READ_TIMEOUT + Duration::from_secs(1),
        "closed after {held:?}, expected {HEADER_READ_TIMEOUT:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_and_closes_idle_connections() {
    let (router, sink) = app_timing_out_after(Duration::from_secs(10));
    let mut server = Server::start(router, ServeOptions::default()).await;
    let mut idle = Conn::open(server.addr).await;
    idle.send(&head("GET", "/health", &[])).await.unwrap();
    assert_eq!(idle.response().await.unwrap().unwrap().status, 200);
    // A request in flight: its head and half its body are in.
    let body =
        serde_json::json!([{"event": "start", "ts": "2016-11-06T23:30:00", "player_id": player(7), "country": "FI",
                                   "session_id": "00000000-0000-4000-8000-000000000001"}])
        .to_string();
    let length = format!("content-length: {}", body.len());
    let mut busy = Conn::open(server.addr).await;
    busy.send(&head("POST", "/events", &["content-type: application/json", &length])).await.unwrap();
    busy.send(&body.as_bytes()[..body.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.signal_stop();
    assert!(idle.closed_within(Duration::from_secs(2)).await.is_some(), "the idle connection is closed at once");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err(), "no new connection is accepted");
    assert!(!server.has_stopped(), "the server waits for the request in flight");
    busy.send(&body.as_bytes()[body.len() / 2..]).await.unwrap();
    let answer = busy.response().await.unwrap().unwrap();
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(sink.batches.lock().unwrap().len(), 1);
    server.stop(Duration::from_secs(2)).await;
}

/// Raises this process's soft limit on open files to its hard limit (the
/// usual soft default, 1,024, is far below what the hard limit allows), and
/// fails the test when even the hard limit is below `needed`: a test that
/// cannot run must not pass.
fn allow_open_files(needed: u64) {
    let (soft, hard) = rlimit::Resource::NOFILE.get().expect("reading RLIMIT_NOFILE");
    let raised = rlimit::increase_nofile_limit(u64::MAX).expect("raising the soft RLIMIT_NOFILE to the hard limit");
    eprintln!("open files limit: soft {soft}, hard {hard}; raised the soft limit to {raised}");
    assert!(
        raised >= needed,
        "this test needs {needed} open files, but the hard limit is {hard} (soft {raised} after raising it): \
         raise the hard limit (e.g. `ulimit -Hn 4096` as root, `--ulimit nofile=4096` for Docker, or \
         /etc/security/limits.conf) and run it again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_are_all_answered() {
    const CONNECTIONS: usize = 1000;
    // Both ends of every connection are in this process, plus some slack.
    allow_open_files(2 * CONNECTIONS as u64 + 100);
    let (router, _) = app_timing_out_after(Duration::from_secs(10));
    let server = Server::start(router, ServeOptions::default()).await;
    let addr = server.addr;
    let started = Instant::now();
    // Everyone connects first, then all send at once.
    let all_connected = Arc::new(tokio::sync::Barrier::new(CONNECTIONS));
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for n in 0..CONNECTIONS {
        let all_connected = all_connected.clone();
        let path = match n % 3 {
            0 => "/health".to_string(),
            1 => "/models/started_sessions/IT/3".to_string(),
            _ => format!("/models/completed-sessions/{}", player(1)),
        };
        clients.push(tokio::spawn(async move {
            let connected = tokio::net::TcpStream::connect(addr).await;
            all_connected.wait().await;
            let mut conn = Conn::from_stream(connected.map_err(|error| format!("connect: {error}"))?);
            conn.send(&head("GET", &path, &["connection: close"])).await.map_err(|error| format!("send: {error}"))?;
            let response = tokio::time::timeout(Duration::from_secs(30), conn.response())
                .await
                .map_err(|_| "no answer in 30 s".to_string())?
                .map_err(|error| format!("read: {error}"))?
                .ok_or_else(|| "closed without an answer".to_string())?;
            Ok::<_, String>((path, response))
        }));
    }
    let mut failures = Vec::new();
    let mut answered = 0;
    for client in clients {
        match client.await.unwrap() {
            Ok((_, response)) if response.status == 200 => answered += 1,
            // The documented request timeout: a JSON 503.
            Ok((_, response))
                if response.status == 503 && response.text().contains("longer than") && response.json().is_object() =>
            {
                answered += 1
            }
            Ok((path, response)) => failures.push(format!("{path}: {} {}", response.status, response.text())),
            Err(error) => failures.push(error),
        }
    }
    eprintln!("{answered} of {CONNECTIONS} concurrent connections answered in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{} failed, e.g. {:?}", failures.len(), &failures[..failures.len().min(5)]);
    server.stop(Duration::from_secs(5)).await;
}
