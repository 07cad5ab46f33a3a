//! The durability contract of `POST /events`: SIGKILL of the API at random
//! moments under sustained POST load, again and again on one lake and one
//! write-ahead log. Afterwards every event that got a 202 is in the raw
//! table exactly once, and no event is there that was never sent.
//!
//! Seeded like the crash trials: `TORTURE_SEED=<n>` replays the kill
//! moments; `TORTURE_API_KILLS=<n>` sets how many kills land (20; `make
//! soak` raises it).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sessionlake_lake::query;

use crate::report;
use crate::support::*;

/// Concurrent clients, each with keep-alive connections.
const CLIENTS: u32 = 8;

/// The batch a client posts as its `n`-th of cycle `cycle`: 5 sessions,
/// start and end, unique to (cycle, client, n).
fn batch(cycle: u32, client: u32, n: u32) -> Vec<Value> {
    (0..5)
        .flat_map(|i| {
            let session = format!("{cycle:08x}-{client:04x}-4000-8000-{:012x}", u64::from(n) * 5 + i);
            let player = format!("{:032x}", u128::from(client) << 32 | u128::from(i));
            let at = |minute: u64| format!("2016-11-0{}T{:02}:{:02}:00.000000", 2 + i % 2, minute / 60, minute % 60);
            let minute = u64::from(n) % 600;
            [
                json!({"event": "start", "ts": at(minute), "session_id": session, "player_id": player, "country": "FI"}),
                json!({"event": "end", "ts": at(minute + 7), "session_id": session, "player_id": player}),
            ]
        })
        .collect()
}

fn identities(batch: &[Value]) -> impl Iterator<Item = String> + '_ {
    batch.iter().map(|event| sessionlake_model::parse_line(event.to_string().as_bytes()).unwrap().unique_id_row())
}

/// What the clients of one cycle did.
#[derive(Default)]
struct Posted {
    sent: Vec<Vec<Value>>,
    acknowledged: Vec<Vec<Value>>,
    other_statuses: Vec<u16>,
}

/// One client: posts its batches back to back until `stop`, then returns
/// what it sent and what got a 202. Every fourth batch repeats an earlier
/// acknowledged one (a client retrying after a timeout).
async fn client(base: String, cycle: u32, client: u32, stop: Arc<AtomicBool>, retry: Option<Vec<Value>>) -> Posted {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut posted = Posted::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let body = match (&retry, n % 4) {
            (Some(earlier), 3) => earlier.clone(),
            _ => batch(cycle, client, n),
        };
        n += 1;
        posted.sent.push(body.clone());
        let answer = http
            .post(format!("{base}/events"))
            .header("content-type", "application/json")
            .body(Value::Array(body.clone()).to_string())
            .send()
            .await;
        match answer {
            Ok(response) if response.status().as_u16() == 202 => posted.acknowledged.push(body),
            Ok(response) => posted.other_statuses.push(response.status().as_u16()),
            // The API was killed mid-request: not acknowledged.
            Err(_) => break,
        }
    }
    posted
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_event_survives_sigkill_of_the_api() {
    let seed: u64 = std::env::var("TORTURE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    let kills: u32 = std::env::var("TORTURE_API_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(20);
    eprintln!("API kill trials: TORTURE_SEED={seed} TORTURE_API_KILLS={kills}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let (nodes, keyspace) = (nodes(), keyspace("api_kills"));
    let start = || {
        let command =
            sessionlake(&lake, &["api", "--addr", "127.0.0.1:0", "--cassandra-nodes", &nodes, "--keyspace", &keyspace]);
        ApiProcess::spawn(command, "API listening on ", Duration::from_secs(60))
    };

    let (mut sent, mut acknowledged) = (BTreeSet::new(), BTreeSet::new());
    let mut other_statuses = Vec::new();
    let mut last_acknowledged: Option<Vec<Value>> = None;
    for cycle in 0..kills {
        let api = start();
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| tokio::spawn(client(api.base.clone(), cycle, c, stop.clone(), last_acknowledged.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..900))).await;
        let log = api.kill();
        stop.store(true, Ordering::Relaxed);
        for task in clients {
            let posted = task.await.unwrap();
            sent.extend(posted.sent.iter().flat_map(|batch| identities(batch)));
            acknowledged.extend(posted.acknowledged.iter().flat_map(|batch| identities(batch)));
            if let Some(batch) = posted.acknowledged.last() {
                last_acknowledged = Some(batch.clone());
            }
            other_statuses.extend(posted.other_statuses);
        }
        assert!(!log.contains("panicked"), "cycle {cycle} (TORTURE_SEED={seed}): {log}");
    }
    // A last start folds what the killed ones left in the log; SIGTERM
    // then folds the rest and stops.
    let last = start();
    let log = last.stop();
    assert!(log.contains("write-ahead log open"), "{log}");

    let batches = query::sql(&sessionlake_lake::Lake::new(&lake), "SELECT \"UNIQUE_ID_ROW\" FROM r_session_events")
        .await
        .unwrap();
    let rows: Vec<String> =
        query::text_rows(&batches).unwrap().into_iter().map(|row| row[0].clone().unwrap()).collect();
    let in_raw: BTreeSet<&String> = rows.iter().collect();
    let duplicates = rows.len() - in_raw.len();
    let lost = acknowledged.iter().filter(|id| !in_raw.contains(id)).count();
    let never_sent = in_raw.iter().filter(|id| !sent.contains(**id)).count();
    report::record(
        "api_kills",
        json!({
            "what": "SIGKILL of the API under POST load, acknowledged from its write-ahead log",
            "seed": seed,
            "kills": kills,
            "events_sent": sent.len(),
            "events_acknowledged": acknowledged.len(),
            "rows_compared": acknowledged.len(),
            "raw_rows": rows.len(),
            "duplicates": duplicates,
            "lost": lost,
            "never_sent": never_sent,
            "equal": duplicates == 0 && lost == 0 && never_sent == 0,
        }),
    );
    eprintln!("{kills} kills: {} events sent, {} acknowledged, {} in raw", sent.len(), acknowledged.len(), rows.len());
    assert!(acknowledged.len() >= 1000, "the load was sustained: {} acknowledged events", acknowledged.len());
    assert_eq!(other_statuses, Vec::<u16>::new(), "every answer was a 202 (or none: killed)");
    assert_eq!(duplicates, 0, "no event twice (TORTURE_SEED={seed})");
    assert_eq!(lost, 0, "every acknowledged event is in raw (TORTURE_SEED={seed})");
    assert_eq!(never_sent, 0, "nothing that was never sent (TORTURE_SEED={seed})");
}
