//! Live ingest (`POST /events`): group commit, idempotent retries, durable
//! acknowledgements, background compaction that the sessions stage does not
//! see, clean shutdown, and a file-based raw run writing the same table.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sessionlake_lake::Lake;
use sessionlake_lake::raw::read::read_landed_file;
use sessionlake_lake::raw::{LiveIngest, LiveSettings};
use sessionlake_model::time::date_of_day;
use sessionlake_model::{Event, tables};

use crate::util::{count, counts, generated, gold_content, ingest, open_table, raw, sessions, version};

/// The valid events of a generated file, in file order per date (exact
/// repeats included, as a client retrying would send them).
pub(crate) fn events_of(path: &Path) -> Vec<Event> {
    let parsed = read_landed_file(path, |_| {}).expect("read generated file");
    parsed.days.into_values().flatten().collect()
}

/// Distinct raw identities (UNIQUE_ID_ROW: every field) among `events`.
pub(crate) fn distinct(events: &[Event]) -> u64 {
    events.iter().collect::<HashSet<_>>().len() as u64
}

/// Requests of 1, 2, …, 10, 1, 2, … events.
pub(crate) fn requests(events: &[Event]) -> Vec<Vec<Event>> {
    let mut requests = Vec::new();
    let mut rest = events;
    let mut size = 1;
    while !rest.is_empty() {
        let (request, tail) = rest.split_at(size.min(rest.len()));
        requests.push(request.to_vec());
        rest = tail;
        size = size % 10 + 1;
    }
    requests
}

/// Three busy days of the generator's range: tests that need several
/// partitions but not all 38 keep to them.
const DATES: [&str; 3] = ["2016-11-10", "2016-11-11", "2016-11-12"];

/// The events dated on one of `dates`.
fn on_dates(events: Vec<Event>, dates: &[&str]) -> Vec<Event> {
    events.into_iter().filter(|event| dates.contains(&date_of_day(event.event_day()).to_string().as_str())).collect()
}

/// Copies the lines of a bzip2 file that mention one of `dates` (valid
/// events of those dates, plus some broken lines) into a new bzip2 file.
fn keep_lines_mentioning(from: &Path, to: &Path, dates: &[&str]) {
    let mut bytes = Vec::new();
    bzip2::read::MultiBzDecoder::new(std::fs::File::open(from).unwrap()).read_to_end(&mut bytes).unwrap();
    let mentions =
        |line: &[u8]| dates.iter().any(|date| line.windows(date.len()).any(|window| window == date.as_bytes()));
    let mut encoder = bzip2::write::BzEncoder::new(std::fs::File::create(to).unwrap(), bzip2::Compression::fast());
    for line in bytes.split(|&byte| byte == b'\n').filter(|line| mentions(line)) {
        encoder.write_all(line).unwrap();
        encoder.write_all(b"\n").unwrap();
    }
    encoder.finish().unwrap();
}

/// The defaults, without compaction unless a test turns it on.
fn settings() -> LiveSettings {
    LiveSettings { compact_after_commits: 0, ..LiveSettings::default() }
}

pub(crate) async fn raw_rows(lake: &Lake) -> u64 {
    count(lake, "SELECT COUNT(*) FROM r_session_events").await
}

/// Active data files of the raw table per EVENT_DATE.
async fn files_per_date(lake: &Lake) -> BTreeMap<String, u64> {
    let table = open_table(lake, tables::RAW_TABLE_DIR).await.expect("raw table");
    let mut files = BTreeMap::new();
    for uri in table.get_file_uris().expect("file list") {
        let date = uri.split("EVENT_DATE=").nth(1).expect("partitioned").split('/').next().unwrap().to_string();
        *files.entry(date).or_insert(0) += 1;
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generated(dir.path(), 600, 41, 0.02);
    let events = events_of(&file);
    assert_eq!(distinct(&events), truth.raw_rows);
    let requests = requests(&events);
    let lake = Lake::new(dir.path().join("lake"));
    let live = LiveIngest::start(lake.clone(), settings()).await.unwrap();

    let started = Instant::now();
    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|request| {
            let live = live.clone();
            tokio::spawn(async move { live.append(request).await })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for (task, request) in tasks.into_iter().zip(&requests) {
        let appended = task.await.unwrap().expect("acknowledged");
        assert_eq!(appended.events, request.len());
        versions.insert(appended.raw_version().unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = live.shutdown().await.unwrap();
    let stats = report.stats;
    println!("{} requests, {} events: {} commits in {seconds:.2} s", requests.len(), events.len(), stats.commits);

    assert!(requests.len() >= 200, "{} requests", requests.len());
    assert_eq!(stats.requests_acknowledged, requests.len() as u64);
    assert_eq!(stats.events_acknowledged, events.len() as u64);
    assert_eq!(stats.rows_inserted, truth.raw_rows);
    assert_eq!(stats.duplicates, events.len() as u64 - truth.raw_rows);
    assert_eq!(stats.requests_failed, 0);
    // Group commit: the table was created at version 0, then one version
    // per live commit, far fewer than requests.
    assert_eq!(version(&lake, tables::RAW_TABLE_DIR).await, Some(stats.commits));
    assert!(stats.commits < requests.len() as u64 / 4, "{} commits for {} requests", stats.commits, requests.len());
    assert!(versions.len() as u64 <= stats.commits && versions.iter().all(|&v| v >= 1 && v <= stats.commits as i64));
    assert_eq!(stats.last_raw_version, Some(stats.commits as i64));

    assert_eq!(raw_rows(&lake).await, truth.raw_rows);
    assert_eq!(count(&lake, "SELECT COUNT(DISTINCT \"UNIQUE_ID_ROW\") FROM r_session_events").await, truth.raw_rows);
    let by_date =
        counts(&lake, "SELECT CAST(\"EVENT_DATE\" AS VARCHAR), COUNT(*) FROM r_session_events GROUP BY 1").await;
    assert_eq!(by_date, truth.raw_rows_by_date);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_batch_adds_nothing_and_merges_prune_by_date() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = generated(dir.path(), 300, 42, 0.0);
    let mut by_date: BTreeMap<i32, Vec<Event>> = BTreeMap::new();
    for event in events_of(&file) {
        by_date.entry(event.event_day()).or_default().push(event);
    }
    let mut busiest: Vec<&Vec<Event>> = by_date.values().collect();
    busiest.sort_by_key(|events| std::cmp::Reverse(events.len()));
    let batches: Vec<Vec<Event>> = busiest[..3].iter().map(|events| events[..10].to_vec()).collect();
    let lake = Lake::new(dir.path().join("lake"));
    let live = LiveIngest::start(lake.clone(), settings()).await.unwrap();

    // One commit (one file) per date.
    let mut first_versions = Vec::new();
    for batch in &batches {
        first_versions.push(live.append(batch.clone()).await.unwrap().raw_version().unwrap());
    }
    assert_eq!(first_versions, vec![1, 2, 3]);
    assert_eq!(raw_rows(&lake).await, 30);

    // The retry inserts nothing, makes no commit, and reads only its own
    // date's partition.
    let before = live.stats();
    let retried = live.append(batches[0].clone()).await.unwrap();
    let after = live.stats();
    assert_eq!(retried.raw_version(), Some(3), "the version read, which holds the events");
    assert_eq!(version(&lake, tables::RAW_TABLE_DIR).await, Some(3));
    assert_eq!(raw_rows(&lake).await, 30);
    assert_eq!((after.commits, after.rows_inserted, after.duplicates - before.duplicates), (3, 30, 10));
    assert_eq!(after.target_files_scanned - before.target_files_scanned, 1);
    assert_eq!(after.target_files_skipped - before.target_files_skipped, 2);

    // The same event twice in one request, and events already there: one
    // new row.
    let fresh = busiest[0][10];
    let mut repeated = vec![fresh, fresh];
    repeated.extend_from_slice(&batches[1][..3]);
    let appended = live.append(repeated).await.unwrap();
    assert_eq!((appended.events, appended.raw_version()), (5, Some(4)));
    assert_eq!(raw_rows(&lake).await, 31);
    // Insert-only: the commit adds a file and rewrites none.
    let commit = std::fs::read_to_string(
        lake.local_root().unwrap().join(tables::RAW_TABLE_DIR).join(format!("_delta_log/{:020}.json", 4)),
    )
    .unwrap();
    assert!(!commit.contains("\"remove\""));
    let stats = live.shutdown().await.unwrap().stats;
    assert_eq!((stats.commits, stats.rows_inserted, stats.duplicates), (4, 31, 14));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_shrinks_partitions_and_sessions_do_not_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = generated(dir.path(), 600, 43, 0.02);
    let events = on_dates(events_of(&file), &DATES);
    let expected_rows = distinct(&events);
    let expected_sessions = events.iter().map(|event| event.session_id).collect::<HashSet<_>>().len() as u64;
    const COMMITS: usize = 10;
    // Dealt round-robin: every date is in every commit.
    let mut chunks = vec![Vec::new(); COMMITS];
    for (position, event) in events.iter().enumerate() {
        chunks[position % COMMITS].push(*event);
    }

    let plain = Lake::new(dir.path().join("plain"));
    let compacted = Lake::new(dir.path().join("compacted"));
    let mut reports = Vec::new();
    for (lake, compact_after_commits) in [(&plain, 0), (&compacted, COMMITS as u64)] {
        let live = LiveIngest::start(lake.clone(), LiveSettings { compact_after_commits, ..settings() }).await.unwrap();
        for chunk in &chunks {
            live.append(chunk.clone()).await.unwrap();
        }
        // Shutdown waits for the compaction started after the last commit.
        reports.push(live.shutdown().await.unwrap().stats);
    }
    let (plain_stats, compacted_stats) = (&reports[0], &reports[1]);
    assert_eq!((plain_stats.commits, compacted_stats.commits), (COMMITS as u64, COMMITS as u64));

    // Without compaction: one file per date per commit; with: one per date.
    let files = |per_date: u64| DATES.iter().map(|date| (date.to_string(), per_date)).collect::<BTreeMap<_, _>>();
    assert_eq!(files_per_date(&plain).await, files(COMMITS as u64));
    assert_eq!(files_per_date(&compacted).await, files(1));
    assert_eq!(
        (compacted_stats.compactions, compacted_stats.files_compacted, compacted_stats.files_written_by_compaction),
        (1, (COMMITS * DATES.len()) as u64, DATES.len() as u64)
    );
    assert_eq!(version(&compacted, tables::RAW_TABLE_DIR).await, Some(COMMITS as u64 + 1));
    let optimize_commit = std::fs::read_to_string(
        compacted
            .local_root()
            .unwrap()
            .join(tables::RAW_TABLE_DIR)
            .join(format!("_delta_log/{:020}.json", COMMITS + 1)),
    )
    .unwrap();
    assert!(optimize_commit.contains("\"OPTIMIZE\"") && !optimize_commit.contains("\"dataChange\":true"));

    for lake in [&plain, &compacted] {
        assert_eq!(raw_rows(lake).await, expected_rows);
        let report = sessions(lake, None).await;
        assert_eq!(report.raw_rows, expected_rows, "the change feed holds each raw row once");
        assert_eq!(report.inserted, expected_sessions);
    }
    let gold = gold_content(&compacted).await;
    assert_eq!(gold.len() as u64, expected_sessions);
    assert_eq!(gold, gold_content(&plain).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_what_is_queued_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generated(dir.path(), 150, 44, 0.0);
    let events = events_of(&file);
    let requests = requests(&events);
    let lake = Lake::new(dir.path().join("lake"));
    let live = LiveIngest::start(lake.clone(), settings()).await.unwrap();

    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|request| {
            let live = live.clone();
            tokio::spawn(async move { live.append(request).await })
        })
        .collect();
    // Every request is queued (none refused) before shutdown starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.stats().requests_received < requests.len() as u64 {
        assert!(Instant::now() < deadline, "requests not queued");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let pending = requests.len() as u64 - live.stats().requests_acknowledged;
    live.health().expect("the committer runs");
    let report = live.clone().shutdown().await.unwrap();
    let down = live.health().expect_err("shut down: not healthy (the API's /ready says 503)");
    assert!(down.to_string().contains("shutting down"), "{down}");
    println!("{pending} of {} requests were not yet acknowledged at shutdown", requests.len());
    for task in tasks {
        task.await.unwrap().expect("queued before shutdown, so committed");
    }
    assert_eq!(report.stats.requests_acknowledged, requests.len() as u64);
    assert_eq!(report.stats.rows_inserted, truth.raw_rows);
    assert_eq!(raw_rows(&lake).await, truth.raw_rows);

    let refused = live.append(events[..1].to_vec()).await.unwrap_err();
    assert!(refused.to_string().contains("live ingest is stopped"), "{refused}");
    // Shutting down again (from any clone) reports the same counters.
    assert_eq!(live.shutdown().await.unwrap().stats, report.stats);
    assert_eq!(raw_rows(&lake).await, truth.raw_rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_its_requests_and_later_ones_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = generated(dir.path(), 100, 48, 0.0);
    let events = events_of(&file);
    let lake = Lake::new(dir.path().join("lake"));
    let live = LiveIngest::start(lake.clone(), LiveSettings { max_conflict_retries: 1, ..settings() }).await.unwrap();
    assert_eq!(live.append(events[..10].to_vec()).await.unwrap().raw_version(), Some(1));

    // A folder squatting on the next commit's name makes every commit of
    // version 2 fail (delta-rs sees "version exists" and gives up).
    let obstacle = lake.local_root().unwrap().join(tables::RAW_TABLE_DIR).join(format!("_delta_log/{:020}.json", 2));
    std::fs::create_dir(&obstacle).unwrap();
    let batches: Vec<Vec<Event>> = events[10..60].chunks(10).map(<[Event]>::to_vec).collect();
    let failing: Vec<_> = batches
        .iter()
        .cloned()
        .map(|batch| {
            let live = live.clone();
            tokio::spawn(async move { live.append(batch).await })
        })
        .collect();
    for task in failing {
        let error = task.await.unwrap().unwrap_err();
        let message = error.to_string();
        assert!(message.contains(" events failed: ") && !message.contains('\n'), "{message}");
    }
    assert_eq!(live.stats().requests_failed, batches.len() as u64);
    assert_eq!(raw_rows(&lake).await, 10);
    // A failed commit is answered, not a death of the committer.
    live.health().expect("the committer still runs");
    assert_eq!(live.stats().committer_restarts, 0);

    // The committer keeps serving: the same requests, retried, land once.
    std::fs::remove_dir(&obstacle).unwrap();
    for batch in &batches {
        assert_eq!(live.append(batch.clone()).await.unwrap().events, 10);
    }
    let stats = live.shutdown().await.unwrap().stats;
    assert_eq!((stats.requests_acknowledged, stats.requests_failed, stats.rows_inserted), (6, 5, 60));
    assert_eq!(raw_rows(&lake).await, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_based_raw_run_alongside_live_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (generated_file, _) = generated(dir.path(), 1_500, 45, 0.03);
    let landed_file = dir.path().join("three-days.jsonl.bz2");
    keep_lines_mentioning(&generated_file, &landed_file, &DATES);
    let landed = read_landed_file(&landed_file, |_| {}).unwrap();
    let landed_events: Vec<Event> = landed.days.values().flatten().copied().collect();
    let (live_file, _) = generated(dir.path(), 1_500, 46, 0.02);
    let live_events = on_dates(events_of(&live_file), &DATES);
    let lake = Lake::new(dir.path().join("lake"));
    ingest(&lake, &landed_file).await;
    let live = LiveIngest::start(lake.clone(), LiveSettings { compact_after_commits: 4, ..settings() }).await.unwrap();

    // Three clients sending one request after the other, while the raw stage
    // merges the landed file's dates (the same dates) into the same table.
    let requests = requests(&live_events);
    let clients: Vec<_> = requests
        .chunks(requests.len().div_ceil(3))
        .map(|share| {
            let (live, share) = (live.clone(), share.to_vec());
            tokio::spawn(async move {
                for request in share {
                    live.append(request).await.expect("acknowledged");
                }
            })
        })
        .collect();
    let report = raw(&lake, false).await;
    for client in clients {
        client.await.unwrap();
    }
    let stats = live.shutdown().await.unwrap().stats;
    println!(
        "live: {} requests, {} commits, {} conflicts retried, {} compactions; raw stage: {} dates",
        stats.requests_acknowledged, stats.commits, stats.conflicts_retried, stats.compactions, report.dates_merged
    );

    assert_eq!(report.dates_merged, DATES.len() as u64);
    assert_eq!(report.inserted, distinct(&landed_events));
    assert_eq!(stats.rows_inserted, distinct(&live_events));
    let expected_rows = distinct(&landed_events) + distinct(&live_events);
    assert_eq!(raw_rows(&lake).await, expected_rows);
    assert_eq!(count(&lake, "SELECT COUNT(DISTINCT \"UNIQUE_ID_ROW\") FROM r_session_events").await, expected_rows);
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events_rejected").await, landed.rejected.len() as u64);
    // A second raw run finds the file done: its markers survived the races.
    let again = raw(&lake, false).await;
    assert_eq!((again.files_skipped, again.inserted), (1, 0));
}

/// Found by the torture suite (two API processes on one lake): two
/// compactions of the same files at once both committed, and every row of
/// those files was doubled. One compaction at a time holds the lease; the
/// other does nothing and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_compactions_at_once_double_nothing() {
    let dir = tempfile::tempdir().unwrap();
    compactions_at_once_double_nothing(&Lake::new(dir.path().join("lake")), dir.path()).await;
}

/// A compaction holder whose lease expired (paused past its TTL, so it
/// never renewed) commits nothing; the next holder, once the grace is
/// over, is the one compaction that commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_under_an_expired_lease_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    an_expired_compaction_lease_commits_nothing(&Lake::new(dir.path().join("lake")), dir.path()).await;
}

/// Live appends into `lake` (eight small files per date), then a holder
/// of the compaction lease that stopped renewing tries to compact.
pub async fn an_expired_compaction_lease_commits_nothing(lake: &Lake, scratch: &Path) {
    use sessionlake_lake::LakeError;
    use sessionlake_lake::lease::{Lease, LeaseSettings};
    use sessionlake_lake::raw::live::{compact_dates_under, compaction_lease_folder};

    let (file, _) = generated(scratch, 300, 45, 0.0);
    let events = on_dates(events_of(&file), &DATES);
    let live = LiveIngest::start(lake.clone(), settings()).await.unwrap();
    for chunk in events.chunks(events.len().div_ceil(8)) {
        live.append(chunk.to_vec()).await.unwrap();
    }
    live.shutdown().await.unwrap();
    let dates: BTreeSet<i32> = events.iter().map(|event| event.event_day()).collect();
    let files_before = files_per_date(lake).await;
    assert!(files_before.values().all(|&files| files > 1), "{files_before:?}");
    let before = version(lake, tables::RAW_TABLE_DIR).await;

    // Its fence's deadline (a margin before expiry) passes 1 ms after taking;
    // takers wait out a short grace (the same for every taker).
    let settings = LeaseSettings {
        ttl: Duration::from_millis(301),
        grace: Duration::from_millis(700),
        margin: Duration::from_millis(300),
    };
    let mut stale = Lease::try_take(lake.store().unwrap(), compaction_lease_folder(), settings).await.unwrap().unwrap();
    stale.stop_renewing();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let outcome = compact_dates_under(&stale, lake, &dates, 64 << 20, 10).await;
    assert!(matches!(outcome, Err(LakeError::LeaseLost { .. })), "{outcome:?}");
    assert_eq!(version(lake, tables::RAW_TABLE_DIR).await, before, "the expired holder committed nothing");
    let normal = LeaseSettings { grace: settings.grace, ..LeaseSettings::default() };
    let take = || Lease::try_take(lake.store().unwrap(), compaction_lease_folder(), normal);
    assert!(take().await.unwrap().is_none(), "within the grace nobody takes over");

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let taker = take().await.unwrap().expect("the next holder takes the lease");
    let (metrics, _) = compact_dates_under(&taker, lake, &dates, 64 << 20, 10).await.unwrap();
    taker.release().await.unwrap();
    assert_eq!(metrics.num_files_removed, files_before.values().sum::<u64>());
    assert_eq!(version(lake, tables::RAW_TABLE_DIR).await, before.map(|version| version + 1), "one commit");
    assert_eq!(raw_rows(lake).await, distinct(&events), "no row doubled or lost");
    assert_eq!(files_per_date(lake).await.values().copied().collect::<BTreeSet<u64>>(), BTreeSet::from([1]));
    // The expired holder still cannot commit, even after the compaction.
    assert!(matches!(stale.fence(async {}).await, Err(LakeError::LeaseLost { .. })));
}

/// Live appends into `lake`, then two compactions of their dates at once:
/// exactly one compacts, no row is doubled (`scratch`: a folder for inputs).
pub async fn compactions_at_once_double_nothing(lake: &Lake, scratch: &Path) {
    let (file, _) = generated(scratch, 600, 44, 0.0);
    let events = on_dates(events_of(&file), &DATES);
    let lake = lake.clone();
    let live = LiveIngest::start(lake.clone(), settings()).await.unwrap();
    for chunk in events.chunks(events.len().div_ceil(8)) {
        live.append(chunk.to_vec()).await.unwrap();
    }
    live.shutdown().await.unwrap();
    let dates: BTreeSet<i32> = events.iter().map(|event| event.event_day()).collect();
    let (first, second) = tokio::join!(
        sessionlake_lake::raw::live::compact_dates(&lake, &dates, 64 << 20, 10),
        sessionlake_lake::raw::live::compact_dates(&lake, &dates, 64 << 20, 10),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(u8::from(first.is_some()) + u8::from(second.is_some()), 1, "exactly one of them compacts");
    assert_eq!(raw_rows(&lake).await, distinct(&events), "no row doubled");
    assert_eq!(files_per_date(&lake).await.values().copied().collect::<BTreeSet<u64>>(), BTreeSet::from([1]));
}
