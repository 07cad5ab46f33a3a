//! Live ingest acknowledged from a write-ahead log: every acknowledged
//! event reaches the raw table exactly once, whatever the order and shape
//! of the requests, retries included, and a process that dies before a
//! fold leaves its records for the next start.

use std::path::Path;
use std::time::Duration;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sessionlake_lake::Lake;
use sessionlake_lake::raw::{Durable, LiveIngest, LiveSettings, WalSettings};
use sessionlake_model::Event;

use crate::live::{distinct, events_of, raw_rows, requests};
use crate::util::{counts, generated};

fn settings(wal_dir: &Path, fold_interval: Duration) -> LiveSettings {
    LiveSettings {
        compact_after_commits: 0,
        ..LiveSettings::with_wal(WalSettings { fold_interval, ..WalSettings::new(wal_dir) })
    }
}

/// Raw rows per EVENT_DATE and event kind: the table's content in numbers.
async fn content(lake: &Lake) -> std::collections::BTreeMap<String, u64> {
    counts(
        lake,
        "SELECT CAST(\"EVENT_DATE\" AS VARCHAR) || ' ' || event, COUNT(DISTINCT \"UNIQUE_ID_ROW\") \
         FROM r_session_events GROUP BY 1",
    )
    .await
}

/// Posts `requests` (each of them, then every fifth again, as a client
/// retrying after a timeout) from 8 concurrent tasks through a WAL into a
/// new lake, shuts down, and returns the lake.
async fn post_through_wal(dir: &Path, requests: Vec<Vec<Event>>) -> Lake {
    let lake = Lake::new(dir.join("lake"));
    let live = LiveIngest::start(lake.clone(), settings(&dir.join("wal"), Duration::from_millis(50))).await.unwrap();
    let retries: Vec<Vec<Event>> = requests.iter().step_by(5).cloned().collect();
    let all: Vec<Vec<Event>> = requests.into_iter().chain(retries).collect();
    let count = all.len() as u64;
    let mut tasks = Vec::new();
    for share in all.chunks(all.len().div_ceil(8)) {
        let (live, share) = (live.clone(), share.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut sequences = Vec::new();
            for request in share {
                match live.append(request).await.unwrap().durable_in {
                    Durable::WalSequence(seq) => sequences.push(seq),
                    other => panic!("acknowledged from the log, not {other:?}"),
                }
            }
            sequences
        }));
    }
    let mut sequences = Vec::new();
    for task in tasks {
        sequences.extend(task.await.unwrap());
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=count).collect::<Vec<_>>(), "one record per request, numbered without gaps");
    let report = live.shutdown().await.unwrap();
    assert_eq!(report.stats.wal_sequence, count);
    assert_eq!(report.stats.folded_sequence, count, "shutdown folds every record");
    assert_eq!(report.stats.requests_acknowledged, count);
    lake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_requests_reach_raw_exactly_once_whatever_their_order_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generated(dir.path(), 400, 43, 0.02);
    let events = events_of(&file);
    assert_eq!(distinct(&events), truth.raw_rows);

    // Requests of 1..10 events in file order; then the events shuffled, in
    // requests of 7.
    let in_order = post_through_wal(&dir.path().join("a"), requests(&events)).await;
    let mut shuffled = events.clone();
    shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(7));
    let reshaped = post_through_wal(&dir.path().join("b"), shuffled.chunks(7).map(<[Event]>::to_vec).collect()).await;

    for lake in [&in_order, &reshaped] {
        assert_eq!(raw_rows(lake).await, truth.raw_rows, "every distinct event once, retries adding nothing");
    }
    assert_eq!(content(&in_order).await, content(&reshaped).await);
}

/// A process dies (its runtime dropped: no shutdown, no fold) after its
/// requests were acknowledged; the next start on the same log folds them.
#[test]
fn records_a_dead_process_acknowledged_are_folded_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generated(dir.path(), 200, 44, 0.0);
    let events = events_of(&file);
    let lake = Lake::new(dir.path().join("lake"));
    let wal = dir.path().join("wal");
    let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    let first = runtime();
    let acknowledged = first.block_on(async {
        // One fold at the first request, then none for an hour.
        let live = LiveIngest::start(lake.clone(), settings(&wal, Duration::from_secs(3600))).await.unwrap();
        let mut acknowledged = 0;
        for request in requests(&events) {
            live.append(request).await.unwrap();
            acknowledged += 1;
        }
        acknowledged
    });
    // The committer dies with its runtime; the WAL thread ends once the
    // handle is gone, releasing the log's lock.
    drop(first);

    let second = runtime();
    second.block_on(async {
        let live = loop {
            match LiveIngest::start(lake.clone(), settings(&wal, Duration::from_millis(50))).await {
                Ok(live) => break live,
                Err(error) if error.to_string().contains("in use") => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("{error}"),
            }
        };
        let report = live.shutdown().await.unwrap();
        assert!(report.stats.wal_records_replayed > 0, "the dead process left records: {:?}", report.stats);
        assert_eq!(report.stats.folded_sequence, acknowledged);
        assert_eq!(raw_rows(&lake).await, truth.raw_rows, "every acknowledged event, once");
    });

    // A third start finds nothing left to fold.
    runtime().block_on(async {
        let live = LiveIngest::start(lake.clone(), settings(&wal, Duration::from_millis(50))).await.unwrap();
        let report = live.shutdown().await.unwrap();
        assert_eq!(report.stats.wal_records_replayed, 0);
        assert_eq!(raw_rows(&lake).await, truth.raw_rows);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_ingests_cannot_share_one_log() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let wal = dir.path().join("wal");
    let first = LiveIngest::start(lake.clone(), settings(&wal, Duration::from_millis(50))).await.unwrap();
    let error = LiveIngest::start(lake.clone(), settings(&wal, Duration::from_millis(50))).await.unwrap_err();
    assert!(error.to_string().contains("in use by another process"), "{error}");
    first.shutdown().await.unwrap();
}
