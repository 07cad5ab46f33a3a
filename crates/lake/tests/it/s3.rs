//! The lake on a real S3 server: SeaweedFS (`scripts/s3`, built once per
//! machine) on its own loopback address and state dir, started by the test
//! and stopped after it. The same exactness, races and coordination as on
//! local disk, through deltalake's S3 log store and object_store.

use std::path::{Path, PathBuf};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use sessionlake_lake::landing::{Ingest, Manifest, Source};
use sessionlake_lake::lease::{Lease, LeaseSettings};
use sessionlake_lake::testing::S3Server;
use sessionlake_model::tables;

use crate::live::{an_expired_compaction_lease_commits_nothing, compactions_at_once_double_nothing};
use crate::pipeline::lands_exactly;
use crate::util::{count, generated, ingest, raw, sessions};

fn renamed(file: &Path, folder: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(folder).unwrap();
    let target = folder.join(name);
    std::fs::rename(file, &target).unwrap();
    target
}

/// One server, the scenarios one after another (each under its own prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_on_s3_is_as_exact_and_as_safe_as_on_local_disk() {
    let server = S3Server::start("127.0.0.41");
    let dir = tempfile::tempdir().unwrap();

    // The chain equals the truth, table by table; a re-run adds nothing.
    let (file, truth) = generated(dir.path(), 4_000, 11, 0.04);
    let lake = server.lake("exact");
    lands_exactly(&lake, &file, &truth).await;
    let again = Ingest { lake: lake.clone(), source: Source::File(file.clone()), show_progress: false }.run().await;
    assert!(again.unwrap().already_landed);
    let rerun = raw(&lake, false).await;
    assert_eq!((rerun.files_skipped, rerun.inserted, rerun.rejected), (1, 0, 0), "{rerun:?}");
    let rerun = sessions(&lake, None).await;
    assert_eq!((rerun.inserted, rerun.updated), (0, 0), "{rerun:?}");

    // Two ingests of different bytes under one name at once: both land,
    // each entry names its own bytes.
    let lake = server.lake("race");
    let (sources, raw_truths): (Vec<PathBuf>, Vec<u64>) = (0..2)
        .map(|n| {
            let (file, truth) = generated(dir.path(), 150, 200 + n, 0.0);
            (renamed(&file, &dir.path().join(format!("race-{n}")), "events.jsonl.bz2"), truth.raw_rows)
        })
        .unzip();
    let landings: Vec<_> = sources
        .iter()
        .map(|source| {
            let ingest = Ingest { lake: lake.clone(), source: Source::File(source.clone()), show_progress: false };
            tokio::spawn(async move { ingest.run().await.unwrap() })
        })
        .collect();
    let mut files = Vec::new();
    for landing in landings {
        let report = landing.await.unwrap();
        assert!(!report.already_landed);
        files.push(report.entry);
    }
    assert_ne!(files[0].file, files[1].file);
    let store = lake.store().unwrap();
    for (entry, source) in files.iter().zip(&sources) {
        let location = ObjectPath::from(tables::LANDING_DIR).join(entry.file.as_str());
        let landed = store.get(&location).await.unwrap().bytes().await.unwrap();
        assert_eq!(landed.as_ref(), std::fs::read(source).unwrap().as_slice(), "{} holds its own bytes", entry.file);
    }
    assert_eq!(Manifest::of(&lake).unwrap().entries().await.unwrap().len(), 2);

    // Two raw runs at once: every row once.
    let (first, second) = tokio::join!(raw(&lake, false), raw(&lake, false));
    let truth: u64 = raw_truths.iter().sum();
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events").await, truth);
    assert_eq!(first.inserted + second.inserted, truth, "each row inserted by one of them: {first:?} {second:?}");
    assert_eq!(raw(&lake, false).await.inserted, 0);

    // A landed object whose bytes changed is quarantined, not trusted.
    let (file, _) = generated(dir.path(), 100, 300, 0.0);
    let lake = server.lake("changed");
    ingest(&lake, &file).await;
    let entry = Manifest::of(&lake).unwrap().entries().await.unwrap().remove(0);
    let (other, _) = generated(dir.path(), 100, 301, 0.0);
    let location = ObjectPath::from(tables::LANDING_DIR).join(entry.file.as_str());
    lake.store().unwrap().put(&location, PutPayload::from(std::fs::read(other).unwrap())).await.unwrap();
    let report = raw(&lake, false).await;
    assert_eq!(report.files_quarantined, 1, "{report:?}");
    assert!(report.quarantined[0].reason.contains("sha256"), "{report:?}");
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events").await, 0);

    // The compaction lease on S3: of 20 takers of a lease whose holder
    // died, exactly one gets it; two compactions at once double nothing.
    let lake = server.lake("lease");
    let folder = ObjectPath::from("leases/compaction");
    let dead = serde_json::json!({"owner": "dead", "expires_at_ms": chrono::Utc::now().timestamp_millis() - 600_000, "released": false});
    lake.store()
        .unwrap()
        .put(&folder.clone().join("00000000000000000007.json"), PutPayload::from(dead.to_string()))
        .await
        .unwrap();
    // Every taker keeps what it got until all have tried.
    let takers: Vec<_> = (0..20)
        .map(|_| {
            let (store, folder) = (lake.store().unwrap(), folder.clone());
            tokio::spawn(async move { Lease::try_take(store, folder, LeaseSettings::default()).await.unwrap() })
        })
        .collect();
    let mut held = Vec::new();
    for taker in takers {
        held.extend(taker.await.unwrap());
    }
    assert_eq!(held.len(), 1, "exactly one of 20 takers holds the lease");
    held.pop().unwrap().release().await.unwrap();
    compactions_at_once_double_nothing(&server.lake("compaction"), dir.path()).await;
    an_expired_compaction_lease_commits_nothing(&server.lake("expired-lease"), dir.path()).await;

    // Wrong credentials: one clear error, naming the refusal.
    let wrong = server.lake("exact").with_storage_options([("AWS_SECRET_ACCESS_KEY".to_string(), "wrong".to_string())]);
    let (file, _) = generated(dir.path(), 50, 400, 0.0);
    let error = Ingest { lake: wrong, source: Source::File(file), show_progress: false }.run().await.unwrap_err();
    let message = error.to_string();
    eprintln!("wrong credentials: {message}");
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains("403") || message.contains("SignatureDoesNotMatch"), "{message}");
}
