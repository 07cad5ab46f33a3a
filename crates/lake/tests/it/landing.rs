//! Landing: local copies and real HTTP downloads (a server on 127.0.0.1),
//! atomic and idempotent, with one clear error and no partial file on failure;
//! a stalled server fails within the idle timeout; file work stays off the
//! async runtime.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use sessionlake_lake::landing::{Ingest, Manifest, Source};
use sessionlake_lake::{Lake, LakeError};

use crate::util::generated;

async fn land(lake: &Lake, source: Source) -> Result<sessionlake_lake::landing::LandingReport, LakeError> {
    Ingest { lake: lake.clone(), source, show_progress: false }.run().await
}

/// Files in the landing folder other than the manifest.
fn landed_files(lake: &Lake) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(lake.landing_dir())
        .map(|entries| entries.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.retain(|name| name != "_manifest.jsonl" && name != "_manifest");
    names.sort();
    names
}

/// Serves `body` at `/data.jsonl.bz2` and 404 elsewhere; returns the base URL.
async fn serve(body: Vec<u8>) -> String {
    let app = Router::new()
        .route("/data.jsonl.bz2", get(move || async move { body.clone() }))
        .fallback(|| async { StatusCode::NOT_FOUND });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

/// A server that promises `claimed` bytes and sends `sent`, then hangs up.
fn serve_truncated(sent: Vec<u8>, claimed: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {claimed}\r\nContent-Type: application/octet-stream\r\n\r\n"
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(&sent);
        }
    });
    format!("http://{address}/data.jsonl.bz2")
}

/// A server that answers headers promising `claimed` bytes, sends `sent`
/// (none at all, headers included, when `sent` is `None`), then stalls with
/// the connection open for a minute.
fn serve_stalling(sent: Option<Vec<u8>>, claimed: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            if let Some(sent) = sent {
                let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {claimed}\r\n\r\n");
                let _ = stream.write_all(header.as_bytes());
                let _ = stream.write_all(&sent);
                let _ = stream.flush();
            }
            std::thread::sleep(Duration::from_secs(60));
        }
    });
    format!("http://{address}/stalled.jsonl.bz2")
}

fn bytes_of(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_lands_the_exact_bytes_once() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = generated(dir.path(), 200, 1, 0.0);
    let body = bytes_of(&file);
    let base = serve(body.clone()).await;
    let lake = Lake::new(dir.path().join("lake"));

    let url = format!("{base}/data.jsonl.bz2");
    let first = land(&lake, Source::Url(url.clone())).await.unwrap();
    assert!(!first.already_landed);
    assert_eq!(bytes_of(std::path::Path::new(&first.location)), body);
    assert_eq!(first.entry.size, body.len() as u64);
    assert_eq!(first.entry.source, url);
    assert_eq!(first.entry.file, "data.jsonl.bz2");

    // The same bytes again, by URL or by local copy: nothing new.
    let second = land(&lake, Source::Url(url)).await.unwrap();
    assert!(second.already_landed);
    let third = land(&lake, Source::File(file.clone())).await.unwrap();
    assert!(third.already_landed);
    assert_eq!(landed_files(&lake), vec!["data.jsonl.bz2"]);
    assert_eq!(Manifest::of(&lake).unwrap().entries().await.unwrap().len(), 1);

    // Other bytes under the same name land beside it.
    let (other, _) = generated(dir.path(), 200, 2, 0.0);
    let renamed = dir.path().join("data.jsonl.bz2");
    std::fs::copy(&other, &renamed).unwrap();
    let fourth = land(&lake, Source::File(renamed)).await.unwrap();
    assert!(!fourth.already_landed);
    assert_ne!(fourth.entry.file, "data.jsonl.bz2");
    assert_eq!(landed_files(&lake).len(), 2);
}

/// Two ingests of different bytes under one name at the same moment (two
/// processes; here two tasks on two threads): both land, each manifest
/// entry names a file holding exactly its bytes, nothing is lost. Before
/// conditional placement, the loser skipped its rename and recorded its
/// hash against the winner's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_ingests_of_different_bytes_under_one_name_both_land() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..6u64 {
        let lake = Lake::new(dir.path().join(format!("lake-{round}")));
        let sources: Vec<_> = (0..2u64)
            .map(|n| {
                let (file, _) = generated(dir.path(), 150, 100 + round * 2 + n, 0.0);
                let folder = dir.path().join(format!("source-{round}-{n}"));
                std::fs::create_dir_all(&folder).unwrap();
                let named = folder.join("events.jsonl.bz2");
                std::fs::rename(&file, &named).unwrap();
                named
            })
            .collect();
        let racers: Vec<_> = sources
            .iter()
            .map(|source| {
                let (lake, source) = (lake.clone(), source.clone());
                tokio::spawn(async move { land(&lake, Source::File(source)).await.unwrap() })
            })
            .collect();
        let mut reports = Vec::new();
        for racer in racers {
            reports.push(racer.await.unwrap());
        }
        assert!(reports.iter().all(|report| !report.already_landed), "round {round}");
        assert_ne!(reports[0].entry.file, reports[1].entry.file, "round {round}");
        let entries = Manifest::of(&lake).unwrap().entries().await.unwrap();
        assert_eq!(entries.len(), 2, "round {round}");
        for (report, source) in reports.iter().zip(&sources) {
            assert_eq!(
                bytes_of(std::path::Path::new(&report.location)),
                bytes_of(source),
                "round {round}: {} holds its own bytes",
                report.entry.file
            );
            assert!(entries.contains(&report.entry), "round {round}");
        }
        assert_eq!(landed_files(&lake).len(), 2, "round {round}: no temp file left");
    }
}

/// The same bytes landed by two ingests at once: one entry, one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_ingests_of_the_same_bytes_land_once() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = generated(dir.path(), 150, 7, 0.0);
    for round in 0..6 {
        let lake = Lake::new(dir.path().join(format!("lake-{round}")));
        let (a, b) = tokio::join!(
            tokio::spawn({
                let (lake, file) = (lake.clone(), file.clone());
                async move { land(&lake, Source::File(file)).await.unwrap() }
            }),
            tokio::spawn({
                let (lake, file) = (lake.clone(), file.clone());
                async move { land(&lake, Source::File(file)).await.unwrap() }
            }),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.entry.file, b.entry.file, "round {round}");
        assert_eq!(Manifest::of(&lake).unwrap().entries().await.unwrap().len(), 1, "round {round}");
        assert_eq!(landed_files(&lake), vec![a.entry.file.clone()], "round {round}");
    }
}

/// Lakes from before the per-file manifest objects keep their history:
/// `_manifest.jsonl` is read, and its files are not landed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_manifest_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let (file, _) = generated(dir.path(), 100, 9, 0.0);
    let first = land(&lake, Source::File(file.clone())).await.unwrap();
    // Rewrite the lake as the old layout had it.
    let manifest_dir = lake.landing_dir().join("_manifest");
    std::fs::remove_dir_all(&manifest_dir).unwrap();
    let line = serde_json::to_string(&first.entry).unwrap();
    std::fs::write(lake.landing_dir().join("_manifest.jsonl"), format!("{line}\n")).unwrap();
    assert_eq!(Manifest::of(&lake).unwrap().entries().await.unwrap(), vec![first.entry.clone()]);
    let again = land(&lake, Source::File(file)).await.unwrap();
    assert!(again.already_landed);
    assert_eq!(again.entry, first.entry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_errors_are_one_line_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let (file, _) = generated(dir.path(), 200, 1, 0.0);
    let body = bytes_of(&file);

    let base = serve(body.clone()).await;
    let missing = land(&lake, Source::Url(format!("{base}/nothing-here.bz2"))).await.unwrap_err();
    assert!(missing.to_string().contains("404"), "{missing}");

    let truncated = land(&lake, Source::Url(serve_truncated(body[..1000].to_vec(), body.len()))).await.unwrap_err();
    assert!(matches!(truncated, LakeError::Download { .. }), "{truncated}");

    let closed_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let refused = land(&lake, Source::Url(format!("http://{closed_port}/x.bz2"))).await.unwrap_err();
    assert!(refused.to_string().to_lowercase().contains("refused"), "{refused}");

    let text = dir.path().join("plain.jsonl");
    std::fs::write(&text, "{\"event\":\"start\"}\n").unwrap();
    let not_bzip2 = land(&lake, Source::File(text)).await.unwrap_err();
    assert!(matches!(not_bzip2, LakeError::NotBzip2 { .. }), "{not_bzip2}");

    let absent = land(&lake, Source::File(dir.path().join("absent.bz2"))).await.unwrap_err();
    assert!(absent.to_string().contains("absent.bz2"), "{absent}");

    for error in [&missing, &truncated, &refused, &not_bzip2, &absent] {
        assert!(!error.to_string().contains('\n'), "one line: {error}");
    }
    assert_eq!(landed_files(&lake), Vec::<String>::new(), "no partial file");
    assert!(Manifest::of(&lake).unwrap().entries().await.unwrap().is_empty());
}

/// Found by the crash suite: an ingest killed after writing its temp file
/// left it in the landing folder for ever. The next ingest removes the temp
/// files of processes that are gone, and only those.
#[tokio::test]
async fn temp_files_of_dead_ingests_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    std::fs::create_dir_all(lake.landing_dir()).unwrap();
    // A live ingest holds a lock on its temp file; the kernel drops the
    // lock of a dead one (whatever its pid, which means nothing across
    // hosts or containers).
    let orphan = lake.landing_dir().join(".incoming-4294967-1.tmp");
    let running = lake.landing_dir().join(format!(".incoming-{}-1.tmp", std::process::id()));
    std::fs::write(&orphan, b"BZh partial").unwrap();
    std::fs::write(&running, b"BZh in progress").unwrap();
    let held = std::fs::File::open(&running).unwrap();
    held.lock().unwrap();
    let (path, _) = generated(dir.path(), 20, 3, 0.0);
    land(&lake, Source::File(path)).await.unwrap();
    assert!(!orphan.exists(), "the dead ingest's temp file is removed");
    assert!(running.exists(), "a live ingest's temp file (locked) is left alone");
    drop(held);
}

/// Found in review: only a connect timeout was set, so a server that
/// stalled mid-transfer (or before its headers) hung `ingest`, `run` and
/// `up` for ever. A download now fails after the idle timeout with an error
/// naming the URL and the stall, and leaves nothing landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_fails_within_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let (file, _) = generated(dir.path(), 200, 1, 0.0);
    let body = bytes_of(&file);
    let idle_timeout = Duration::from_secs(1);

    let mid_body = serve_stalling(Some(body[..1000].to_vec()), body.len());
    let before_headers = serve_stalling(None, body.len());
    for (url, stall) in [(mid_body, "after 1000 bytes"), (before_headers, "no response")] {
        let ingest = Ingest { lake: lake.clone(), source: Source::Url(url.clone()), show_progress: false };
        let started = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(30), ingest.run_with_idle_timeout(idle_timeout))
            .await
            .unwrap_or_else(|_| panic!("{url}: still waiting after 30 s"));
        let elapsed = started.elapsed();
        let error = outcome.unwrap_err();
        assert!(matches!(error, LakeError::Download { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains(&url) && message.contains("stalled") && message.contains(stall), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(elapsed >= idle_timeout && elapsed < Duration::from_secs(10), "failed after {elapsed:?}");
    }
    assert_eq!(landed_files(&lake), Vec::<String>::new(), "no partial file");
    assert!(Manifest::of(&lake).unwrap().entries().await.unwrap().is_empty());
}

/// Found in review: ingest copied, hashed and fsynced multi-GB files on the
/// async worker threads, so every other task on them waited for the whole
/// copy. On a one-thread runtime, another task must run while ingest is in
/// the middle of reading its source: here a FIFO whose writer, after half
/// the bytes, waits for that task (10 s at most, then writes the rest
/// anyway so that a failing run still ends).
#[tokio::test(flavor = "current_thread")]
async fn ingest_leaves_the_runtime_free_while_it_copies() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let (file, _) = generated(dir.path(), 200, 4, 0.0);
    let body = bytes_of(&file);
    let fifo = dir.path().join("fifo.jsonl.bz2");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (half_written, half_written_seen) = tokio::sync::oneshot::channel();
    let (task_ran, task_ran_seen) = std::sync::mpsc::channel();
    let writer = std::thread::spawn({
        let (fifo, body) = (fifo.clone(), body.clone());
        move || {
            // Opening blocks until ingest opens the FIFO to read it.
            let mut source = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            source.write_all(&body[..body.len() / 2]).unwrap();
            half_written.send(()).unwrap();
            let ran = task_ran_seen.recv_timeout(Duration::from_secs(10)).is_ok();
            source.write_all(&body[body.len() / 2..]).unwrap();
            ran
        }
    });
    let other_task = tokio::spawn(async move {
        half_written_seen.await.unwrap();
        let _ = task_ran.send(());
    });
    let landed = land(&lake, Source::File(fifo)).await.unwrap();
    other_task.await.unwrap();
    assert!(writer.join().unwrap(), "another task ran while ingest was reading its source");
    assert_eq!(bytes_of(std::path::Path::new(&landed.location)), body);
}
