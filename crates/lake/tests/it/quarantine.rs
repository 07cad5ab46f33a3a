//! A landed file that does not decompress is quarantined with its reason
//! (the run goes on with the other files and succeeds), stays listed by
//! every later run without being read, and is read again after `retry` or
//! never again after `drop`. Before, it failed every `raw` run for ever.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sessionlake_lake::Lake;
use sessionlake_lake::landing::{Manifest, ManifestEntry};
use sessionlake_lake::raw::{CORRUPT_FILE, Quarantine, QuarantineChange, QuarantinedFile, RawReport};
use sessionlake_model::tables;

use crate::util::{count, counts, generated, ingest, raw, rows, version};

/// A generated file cut in half: a bzip2 stream that ends too soon.
fn truncated_copy(dir: &Path, source: &Path, name: &str) -> PathBuf {
    let bytes = std::fs::read(source).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    path
}

async fn landed(lake: &Lake, file: &str) -> ManifestEntry {
    let entries = Manifest::of(lake).unwrap().entries().await.unwrap();
    entries.into_iter().find(|entry| entry.file == file).unwrap_or_else(|| panic!("{file} is landed"))
}

fn quarantine(lake: &Lake) -> Quarantine {
    Quarantine { lake: lake.clone() }
}

/// What a run read and wrote, and what it reports quarantined.
fn activity(report: &RawReport) -> [u64; 6] {
    [
        report.files_processed,
        report.files_skipped,
        report.files_quarantined,
        report.lines,
        report.inserted,
        report.rejected,
    ]
}

/// The quarantine rows of the rejected table: (source_file, line_number,
/// raw_line, raw_bytes as hex, message).
async fn corrupt_file_rows(lake: &Lake) -> Vec<Vec<String>> {
    let statement = format!(
        "SELECT source_file, line_number, raw_line, encode(raw_bytes, 'hex'), message \
         FROM r_session_events_rejected WHERE reason = '{CORRUPT_FILE}' ORDER BY rejected_at"
    );
    rows(lake, &statement).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_file_is_quarantined_listed_retried_and_dropped_while_the_others_are_processed() {
    let dir = tempfile::tempdir().unwrap();
    let (first, first_truth) = generated(dir.path(), 400, 61, 0.03);
    let (whole, _) = generated(dir.path(), 400, 62, 0.0);
    let corrupt = truncated_copy(dir.path(), &whole, "corrupt.jsonl.bz2");
    let (last, last_truth) = generated(dir.path(), 400, 63, 0.03);
    let lake = Lake::new(dir.path().join("lake"));
    for file in [&first, &corrupt, &last] {
        ingest(&lake, file).await;
    }
    let corrupt_entry = landed(&lake, "corrupt.jsonl.bz2").await;

    // The run succeeds: the good files are processed in full, the corrupt
    // one is quarantined with the decoder's complaint.
    let report = raw(&lake, false).await;
    let good_lines = first_truth.lines + last_truth.lines;
    let good_rows = first_truth.raw_rows + last_truth.raw_rows;
    let good_rejected = first_truth.rejected_rows + last_truth.rejected_rows;
    assert_eq!(activity(&report), [2, 0, 1, good_lines, good_rows, good_rejected], "{report:?}");
    assert_eq!(report.duplicates, first_truth.duplicate_lines + last_truth.duplicate_lines);
    assert_eq!(report.newly_quarantined, 1);
    let [quarantined] = report.quarantined.as_slice() else { panic!("one quarantined file: {report:?}") };
    assert_eq!((quarantined.file.as_str(), &quarantined.sha256), ("corrupt.jsonl.bz2", &corrupt_entry.sha256));
    assert!(quarantined.reason.contains("truncated or corrupt"), "{quarantined:?}");

    // The tables hold exactly the good files' rows, plus one rejected row
    // that records the quarantine.
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events").await, good_rows);
    let mut by_date = first_truth.raw_rows_by_date.clone();
    for (date, rows) in &last_truth.raw_rows_by_date {
        *by_date.entry(date.clone()).or_insert(0) += rows;
    }
    let stored_by_date =
        counts(&lake, "SELECT CAST(\"EVENT_DATE\" AS VARCHAR), COUNT(*) FROM r_session_events GROUP BY 1").await;
    assert_eq!(stored_by_date, by_date);
    let mut by_reason: BTreeMap<String, u64> = first_truth.rejected_by_reason.clone();
    for (reason, rows) in last_truth.rejected_by_reason.iter().chain([(&CORRUPT_FILE.to_string(), &1)]) {
        *by_reason.entry(reason.clone()).or_insert(0) += rows;
    }
    let stored_by_reason =
        counts(&lake, "SELECT reason, COUNT(*) FROM r_session_events_rejected GROUP BY reason").await;
    assert_eq!(stored_by_reason, by_reason);
    let reason_row = vec![
        "corrupt.jsonl.bz2".to_string(),
        "0".to_string(),
        String::new(),
        String::new(),
        quarantined.reason.clone(),
    ];
    assert_eq!(corrupt_file_rows(&lake).await, vec![reason_row.clone()]);

    // Later runs read nothing, commit nothing, and still report it.
    let raw_version = version(&lake, tables::RAW_TABLE_DIR).await;
    let rejected_version = version(&lake, tables::REJECTED_TABLE_DIR).await;
    let again = raw(&lake, false).await;
    assert_eq!(activity(&again), [0, 2, 1, 0, 0, 0], "{again:?}");
    assert_eq!(again.quarantined, report.quarantined);
    assert_eq!(again.newly_quarantined, 0, "quarantined by an earlier run");
    assert_eq!(version(&lake, tables::RAW_TABLE_DIR).await, raw_version, "no raw commit");
    assert_eq!(version(&lake, tables::REJECTED_TABLE_DIR).await, rejected_version, "no rejected commit");
    assert_eq!(quarantine(&lake).list().await.unwrap(), report.quarantined);

    // Retry (by name): released, so the next run reads it again; it still
    // does not decompress, so it is quarantined again, with a row of its own.
    let retried = quarantine(&lake).retry("corrupt.jsonl.bz2").await.unwrap();
    assert_eq!(retried, QuarantineChange::Changed(quarantined.clone()));
    assert_eq!(quarantine(&lake).list().await.unwrap(), Vec::<QuarantinedFile>::new(), "released");
    let not_again = quarantine(&lake).retry("corrupt.jsonl.bz2").await.unwrap();
    assert_eq!(not_again, QuarantineChange::NotQuarantined { file: "corrupt.jsonl.bz2".into() });
    let after_retry = raw(&lake, false).await;
    assert_eq!(activity(&after_retry), [0, 2, 1, 0, 0, 0], "{after_retry:?}");
    assert_eq!(after_retry.quarantined, report.quarantined);
    assert_eq!(after_retry.newly_quarantined, 1);
    assert_eq!(corrupt_file_rows(&lake).await, vec![reason_row.clone(), reason_row.clone()], "read and failed again");

    // Drop (by SHA-256): done without data, neither read nor listed again;
    // its rows stay as the record of what was lost.
    let dropped = quarantine(&lake).drop_file(&corrupt_entry.sha256).await.unwrap();
    assert_eq!(dropped, QuarantineChange::Changed(quarantined.clone()));
    for _ in 0..2 {
        let after_drop = raw(&lake, false).await;
        assert_eq!(activity(&after_drop), [0, 3, 0, 0, 0, 0], "{after_drop:?}");
        assert!(after_drop.quarantined.is_empty(), "{after_drop:?}");
    }
    assert_eq!(quarantine(&lake).list().await.unwrap(), Vec::<QuarantinedFile>::new());
    assert_eq!(corrupt_file_rows(&lake).await.len(), 2);
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events").await, good_rows);
    assert_eq!(
        quarantine(&lake).retry(&corrupt_entry.sha256).await.unwrap(),
        QuarantineChange::NotQuarantined { file: "corrupt.jsonl.bz2".into() }
    );
    assert_eq!(quarantine(&lake).drop_file("nowhere.jsonl.bz2").await.unwrap(), QuarantineChange::NotLanded);
}

/// A landed file whose bytes changed after landing, even into another valid
/// file, is not trusted: raw checks the manifest's sha256 first and
/// quarantines it, writing no row of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landed_file_with_other_bytes_than_it_landed_with_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = generated(dir.path(), 300, 65, 0.0);
    let (other, _) = generated(dir.path(), 300, 66, 0.0);
    let lake = Lake::new(dir.path().join("lake"));
    ingest(&lake, &file).await;
    let entry = landed(&lake, &file.file_name().unwrap().to_string_lossy()).await;
    std::fs::copy(&other, lake.landing_dir().join(&entry.file)).unwrap();

    let report = raw(&lake, false).await;
    assert_eq!(activity(&report), [0, 0, 1, 0, 0, 0], "{report:?}");
    let [quarantined] = report.quarantined.as_slice() else { panic!("one quarantined file: {report:?}") };
    assert!(quarantined.reason.contains(&format!("not {} as when it landed", entry.sha256)), "{quarantined:?}");
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events").await, 0);
}

/// The case `retry` is for: a landed file damaged on disk after landing
/// (bit rot, a bad copy) and then restored. Once retried, it is read in
/// full — its rejected lines too, whose marker the quarantine did not use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_file_that_decompresses_now_is_processed_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generated(dir.path(), 400, 64, 0.03);
    let lake = Lake::new(dir.path().join("lake"));
    ingest(&lake, &file).await;
    let entry = landed(&lake, &file.file_name().unwrap().to_string_lossy()).await;
    let landed_path = lake.landing_dir().join(&entry.file);
    let good_bytes = std::fs::read(&landed_path).unwrap();
    std::fs::write(&landed_path, &good_bytes[..good_bytes.len() / 3]).unwrap();

    let report = raw(&lake, false).await;
    assert_eq!(activity(&report), [0, 0, 1, 0, 0, 0], "{report:?}");
    let still = raw(&lake, false).await;
    assert_eq!(activity(&still), [0, 0, 1, 0, 0, 0], "a quarantined file is not read: {still:?}");

    std::fs::write(&landed_path, &good_bytes).unwrap();
    let path_text = landed_path.display().to_string();
    assert!(matches!(quarantine(&lake).retry(&path_text).await.unwrap(), QuarantineChange::Changed(_)));
    let after = raw(&lake, false).await;
    assert_eq!(activity(&after), [1, 0, 0, truth.lines, truth.raw_rows, truth.rejected_rows], "{after:?}");
    assert!(after.quarantined.is_empty());
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events").await, truth.raw_rows);
    let line_rejects = format!("SELECT COUNT(*) FROM r_session_events_rejected WHERE reason <> '{CORRUPT_FILE}'");
    assert_eq!(count(&lake, &line_rejects).await, truth.rejected_rows);
    let done = raw(&lake, false).await;
    assert_eq!(activity(&done), [0, 1, 0, 0, 0, 0], "{done:?}");
}
