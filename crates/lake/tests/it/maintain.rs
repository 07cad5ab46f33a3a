//! Table upkeep (`maintain`): compaction, vacuum, checkpoints and log
//! cleanup keep every table's rows, keep the history a lagging reader
//! still needs, and — when told to ignore readers — leave a gap that the
//! readers detect (`HistoryGone`) instead of skipping data.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sessionlake_lake::maintain::{Maintain, MaintainReport, MaintainSettings, ReaderPosition};
use sessionlake_lake::query::{AsOf, sql_as_of};
use sessionlake_lake::raw::ChunkLimits;
use sessionlake_lake::rebuild::{GoldSnapshot, RawSnapshot};
use sessionlake_lake::schema::{RAW, REJECTED, SESSIONS, TableSpec};
use sessionlake_lake::sessions::SessionsStage;
use sessionlake_lake::{Lake, LakeError};
use sessionlake_model::time::parse_ts_micros;

use crate::util::{count, generated, gold_content, ingest, open_table, raw, raw_in_chunks, rows, sessions};

/// The valid events of four days (and every bad line) of a generated file:
/// a few dates per commit instead of forty.
fn input_lines(dir: &Path, seed: u64) -> Vec<Vec<u8>> {
    let (file, _) = generated(dir, 1_500, seed, 0.05);
    let mut text = Vec::new();
    bzip2::read::MultiBzDecoder::new(std::fs::File::open(file).unwrap()).read_to_end(&mut text).unwrap();
    let mut lines: Vec<Vec<u8>> = text.split(|&byte| byte == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(lines.pop(), Some(Vec::new()), "the file ends with a newline");
    let days = parse_ts_micros("2016-11-03T00:00:00").unwrap()..parse_ts_micros("2016-11-07T00:00:00").unwrap();
    lines.retain(|line| match sessionlake_model::parse_line(line) {
        Ok(event) => days.contains(&event.ts_micros),
        Err(_) => true,
    });
    lines
}

/// Distinct sessions among the valid lines: what gold must hold.
fn sessions_in(lines: &[Vec<u8>]) -> u64 {
    let ids: BTreeSet<String> = lines
        .iter()
        .filter_map(|line| sessionlake_model::parse_line(line).ok())
        .map(|event| event.session_id.to_string())
        .collect();
    ids.len() as u64
}

/// Lands `lines` cut into `files` files, running raw after each (and
/// sessions too when `fold_each`): many small commits per table.
async fn land_in_pieces(dir: &Path, lake: &Lake, lines: &[Vec<u8>], files: usize, fold_each: bool) {
    for (index, piece) in lines.chunks(lines.len().div_ceil(files)).enumerate() {
        let path = dir.join(format!("piece-{index}.jsonl.bz2"));
        let mut encoder =
            bzip2::write::BzEncoder::new(std::fs::File::create(&path).unwrap(), bzip2::Compression::fast());
        for line in piece {
            encoder.write_all(line).unwrap();
            encoder.write_all(b"\n").unwrap();
        }
        encoder.finish().unwrap();
        ingest(lake, &path).await;
        // Small chunks: several raw versions (and small files) per piece.
        raw_in_chunks(lake, ChunkLimits { max_lines: 12, ..ChunkLimits::default() }).await;
        if fold_each {
            sessions(lake, None).await;
        }
    }
}

/// Maintenance that removes everything no reader needs at once.
fn immediate(protect_readers: bool) -> MaintainSettings {
    MaintainSettings {
        retention: Duration::ZERO,
        log_retention: Duration::ZERO,
        min_files_to_compact: 2,
        protect_readers,
        ..MaintainSettings::default()
    }
}

async fn maintain(lake: &Lake, settings: MaintainSettings, serve_position: ReaderPosition) -> MaintainReport {
    Maintain { lake: lake.clone(), settings, serve_position }.run().await.expect("maintain")
}

/// Every table's rows (write times aside), sorted.
async fn content(lake: &Lake) -> BTreeMap<&'static str, Vec<Vec<String>>> {
    BTreeMap::from([
        (
            RAW.name,
            rows(
                lake,
                "SELECT country, event, player_id, session_id, ts, \"EVENT_DATE\", \"UNIQUE_ID_ROW\" \
                 FROM r_session_events ORDER BY \"UNIQUE_ID_ROW\"",
            )
            .await,
        ),
        (
            REJECTED.name,
            rows(
                lake,
                "SELECT raw_line, source_file, line_number, reason, message FROM r_session_events_rejected \
                 ORDER BY source_file, line_number, reason",
            )
            .await,
        ),
        (SESSIONS.name, gold_content(lake).await),
    ])
}

/// Data files per partition of a table's latest snapshot.
async fn files_per_partition(lake: &Lake, spec: TableSpec) -> BTreeMap<String, u64> {
    let table = open_table(lake, spec.dir).await.expect("the table exists");
    let mut files = BTreeMap::new();
    for file in table.snapshot().unwrap().log_data().iter() {
        let partition = spec
            .partition_by
            .and_then(|column| file.partition_values_map().remove(column).flatten())
            .unwrap_or_default();
        *files.entry(partition).or_default() += 1;
    }
    files
}

/// `COUNT(*)` of a table as of a version, as `sql --table T --version N` reads it.
async fn count_as_of(lake: &Lake, spec: TableSpec, version: u64) -> Result<u64, LakeError> {
    let as_of = AsOf { table: spec.name.to_string(), version };
    let batches = sql_as_of(lake, &format!("SELECT COUNT(*) FROM {}", spec.name), Some(&as_of)).await?;
    Ok(sessionlake_lake::query::text_rows(&batches)?[0][0].as_deref().unwrap().parse().unwrap())
}

/// The commit versions left in a local table's `_delta_log`.
fn commits_in_log(lake: &Lake, spec: TableSpec) -> Vec<u64> {
    let mut versions: Vec<u64> = std::fs::read_dir(lake.table_dir(&spec).join("_delta_log"))
        .unwrap()
        .filter_map(|entry| entry.unwrap().file_name().to_str()?.strip_suffix(".json")?.parse().ok())
        .collect();
    versions.sort_unstable();
    versions
}

/// Every table's latest version.
async fn versions(lake: &Lake) -> Vec<Option<u64>> {
    let mut versions = Vec::new();
    for spec in [RAW, REJECTED, SESSIONS] {
        versions.push(open_table(lake, spec.dir).await.and_then(|table| table.version()));
    }
    versions
}

/// The change-data files on disk under a local table's `_change_data/`,
/// as the log names them.
fn change_files(lake: &Lake, spec: TableSpec) -> BTreeSet<String> {
    let root = lake.table_dir(&spec);
    let mut found = BTreeSet::new();
    let mut dirs = vec![root.join("_change_data")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.insert(path.strip_prefix(&root).unwrap().to_str().unwrap().to_string());
            }
        }
    }
    found
}

/// The change-data files that the commits `from..` of a local table wrote
/// (what a change feed from `from` reads).
fn change_files_written_from(lake: &Lake, spec: TableSpec, from: u64) -> BTreeSet<String> {
    let log = lake.table_dir(&spec).join("_delta_log");
    let mut written = BTreeSet::new();
    for version in commits_in_log(lake, spec).into_iter().filter(|&version| version >= from) {
        let commit = std::fs::read_to_string(log.join(format!("{version:020}.json"))).unwrap();
        for line in commit.lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(path) = action.pointer("/cdc/path").and_then(serde_json::Value::as_str) {
                written.insert(path.to_string());
            }
        }
    }
    written
}

fn checkpoint_exists(lake: &Lake, spec: TableSpec, version: i64) -> bool {
    lake.table_dir(&spec).join("_delta_log").join(format!("{version:020}.checkpoint.parquet")).is_file()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintain_compacts_every_table_and_keeps_rows_and_kept_history() {
    let dir = tempfile::tempdir().unwrap();
    let lines = input_lines(dir.path(), 41);
    let lake = Lake::new(dir.path().join("lake"));
    land_in_pieces(dir.path(), &lake, &lines, 4, true).await;
    let before = content(&lake).await;
    assert_eq!(before[SESSIONS.name].len() as u64, sessions_in(&lines));
    let gold_latest = open_table(&lake, SESSIONS.dir).await.unwrap().version().unwrap();
    assert!(gold_latest >= 4, "gold has several versions ({gold_latest})");
    // serve has applied gold up to two versions before the latest.
    let serve_applied = gold_latest - 2;
    let mut gold_counts = BTreeMap::new();
    for version in serve_applied + 1..=gold_latest {
        gold_counts.insert(version, count_as_of(&lake, SESSIONS, version).await.unwrap());
    }
    for spec in [RAW, REJECTED, SESSIONS] {
        assert!(
            files_per_partition(&lake, spec).await.values().any(|&files| files > 1),
            "{} has small files",
            spec.name
        );
    }

    // A dry run reports and changes nothing.
    let versions_before = versions(&lake).await;
    let change_files_before = change_files(&lake, SESSIONS);
    let dry = maintain(
        &lake,
        MaintainSettings { dry_run: true, ..immediate(true) },
        ReaderPosition::Applied(Some(serve_applied as i64)),
    )
    .await;
    assert!(dry.tables.values().all(|table| table.files_compacted > 0 && table.compaction == "would compact"));
    let versions_after_dry = versions(&lake).await;
    assert_eq!(versions_after_dry, versions_before, "a dry run commits nothing");
    assert_eq!(change_files(&lake, SESSIONS), change_files_before, "a dry run deletes nothing");

    let report = maintain(&lake, immediate(true), ReaderPosition::Applied(Some(serve_applied as i64))).await;

    // At most one file per partition, the same rows.
    for spec in [RAW, REJECTED, SESSIONS] {
        let files = files_per_partition(&lake, spec).await;
        assert!(files.values().all(|&files| files == 1), "{}: {files:?}", spec.name);
        let table = &report.tables[spec.name];
        assert_eq!(table.compaction, "compacted", "{}", spec.name);
        assert_eq!(table.files_after, files.len() as u64, "{}", spec.name);
        assert_eq!(table.files_compacted, table.files_before - table.files_after + table.files_written);
    }
    assert_eq!(content(&lake).await, before, "maintenance changes no row");

    // Raw and rejected have no lagging reader: every replaced file is gone.
    // Rejected has no reader at all: its log starts at the checkpoint of
    // the latest version. Sessions has read raw up to the version before
    // maintenance: the log keeps every later commit (this pass's own), from
    // a checkpoint at the first of them.
    for spec in [RAW, REJECTED] {
        let table = &report.tables[spec.name];
        assert_eq!(table.files_removed, table.files_compacted, "{}", spec.name);
        assert!(table.bytes_freed > 0);
        assert_eq!(table.checkpoint_version, Some(table.version_after), "{}", spec.name);
        assert!(checkpoint_exists(&lake, spec, table.version_after));
    }
    let rejected = &report.tables[REJECTED.name];
    assert_eq!(commits_in_log(&lake, REJECTED), vec![rejected.version_after as u64]);
    assert_eq!(rejected.oldest_log_version, Some(rejected.version_after));
    assert_eq!(rejected.log_entries_removed, rejected.version_after as u64, "every commit before the latest");
    let raw_report = &report.tables[RAW.name];
    let sessions_needs_from = raw_report.version_before + 1;
    assert_eq!(raw_report.reader_applied, Some(raw_report.version_before));
    assert_eq!(raw_report.kept_for_reader_from, Some(sessions_needs_from));
    assert!(checkpoint_exists(&lake, RAW, sessions_needs_from));
    let kept: Vec<u64> = (sessions_needs_from as u64..=raw_report.version_after as u64).collect();
    assert_eq!(commits_in_log(&lake, RAW), kept);
    assert_eq!(raw_report.log_entries_removed, sessions_needs_from as u64, "the commits before the reader's");
    assert_eq!(count_as_of(&lake, RAW, sessions_needs_from as u64).await.unwrap(), before[RAW.name].len() as u64);
    // Older raw versions are gone from the log: time travel to them fails
    // rather than answering from another version.
    assert!(count_as_of(&lake, RAW, 0).await.is_err());

    // Gold: serve still needs versions after `serve_applied`. Their log
    // entries and files are kept, so each reads as before maintenance; of
    // the change-data files, exactly those of its versions are.
    let gold = &report.tables[SESSIONS.name];
    let serve_reads = change_files_written_from(&lake, SESSIONS, serve_applied + 1);
    assert!(!serve_reads.is_empty(), "serve's versions wrote change data");
    assert_eq!(change_files(&lake, SESSIONS), serve_reads);
    assert_eq!(gold.change_files_removed as usize, change_files_before.len() - serve_reads.len());
    assert!(gold.change_files_removed > 0 && gold.change_bytes_freed > 0, "{gold:#?}");
    assert_eq!(gold.reader.as_deref(), Some("serve"));
    assert_eq!(gold.kept_for_reader_from, Some(serve_applied as i64 + 1));
    assert!(gold.files_kept_for_reader > 0, "the compacted-away files serve's versions read are kept");
    assert!(checkpoint_exists(&lake, SESSIONS, gold.version_after));
    assert!(commits_in_log(&lake, SESSIONS).first().is_some_and(|&oldest| oldest <= serve_applied + 1));
    for (version, rows) in gold_counts {
        assert_eq!(count_as_of(&lake, SESSIONS, version).await.unwrap(), rows, "gold version {version}");
    }

    // Once serve has caught up, the next pass lets the rest go.
    let caught_up = ReaderPosition::Applied(Some(gold.version_after));
    let again = maintain(&lake, immediate(true), caught_up).await;
    let gold = &again.tables[SESSIONS.name];
    assert_eq!(gold.files_kept_for_reader, 0);
    assert_eq!(gold.files_removed, report.tables[SESSIONS.name].files_kept_for_reader, "{report:#?}\n{again:#?}");
    assert_eq!(gold.change_files_removed as usize, serve_reads.len());
    assert_eq!(change_files(&lake, SESSIONS), BTreeSet::new(), "no reader needs any change data");
    assert_eq!(commits_in_log(&lake, SESSIONS).first(), Some(&(report.tables[SESSIONS.name].version_after as u64 + 1)));
    assert_eq!(content(&lake).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_sessions_stage_finishes_exactly_after_maintain() {
    let dir = tempfile::tempdir().unwrap();
    let lines = input_lines(dir.path(), 43);
    let lake = Lake::new(dir.path().join("lake"));
    land_in_pieces(dir.path(), &lake, &lines, 4, false).await;
    let applied = fold_one_micro_batch(&lake).await;
    let raw_latest = open_table(&lake, RAW.dir).await.unwrap().version().unwrap() as i64;

    let report = maintain(&lake, immediate(true), ReaderPosition::Unknown("no serve in this test".into())).await;
    let raw_report = &report.tables[RAW.name];
    assert_eq!(raw_report.reader_applied, Some(applied));
    assert_eq!(raw_report.kept_for_reader_from, Some(applied + 1));
    assert!(raw_report.files_compacted > 0);
    assert!(raw_report.files_kept_for_reader > 0, "files of the versions sessions has not read are kept");
    assert!(commits_in_log(&lake, RAW).first().is_some_and(|&oldest| oldest as i64 <= applied + 1));
    assert!(report.tables[SESSIONS.name].reader_note.as_deref().is_some_and(|note| note.contains("unknown")));

    let rest = sessions(&lake, None).await;
    assert_eq!(rest.from_version, Some(applied));
    assert!(rest.to_version >= Some(raw_latest), "every raw version with data is folded");

    // The same lines in one file, refined without maintenance.
    let reference = Lake::new(dir.path().join("reference"));
    let whole = dir.path().join("whole.jsonl.bz2");
    let mut encoder = bzip2::write::BzEncoder::new(std::fs::File::create(&whole).unwrap(), bzip2::Compression::fast());
    for line in &lines {
        encoder.write_all(line).unwrap();
        encoder.write_all(b"\n").unwrap();
    }
    encoder.finish().unwrap();
    ingest(&reference, &whole).await;
    raw(&reference, false).await;
    sessions(&reference, None).await;
    let gold = gold_content(&lake).await;
    assert_eq!(gold.len() as u64, sessions_in(&lines));
    assert_eq!(gold, gold_content(&reference).await);
    let raw_rows = count(&lake, "SELECT COUNT(*) FROM r_session_events").await;
    assert_eq!(raw_rows, count(&reference, "SELECT COUNT(*) FROM r_session_events").await);
}

/// A lake whose sessions stage lags behind raw, and maintenance that
/// ignored it: the stage must fail with `HistoryGone`, never skip.
async fn forced_gap(dir: &Path) -> (Lake, i64) {
    let lines = input_lines(dir, 47);
    let lake = Lake::new(dir.join("lake"));
    land_in_pieces(dir, &lake, &lines, 4, false).await;
    let applied = fold_one_micro_batch(&lake).await;
    let report = maintain(&lake, immediate(false), ReaderPosition::Applied(None)).await;
    assert!(report.tables[RAW.name].reader_note.as_deref().is_some_and(|note| note.contains("not protected")));
    (lake, applied)
}

/// Runs the sessions stage for one micro-batch of two raw versions: gold's
/// marker ends behind raw. Returns the raw version applied.
async fn fold_one_micro_batch(lake: &Lake) -> i64 {
    let partial = SessionsStage {
        max_versions_per_batch: 2,
        max_batches: sessionlake_model::crash::StopAfter::after(1),
        ..stage(lake)
    };
    let applied = partial.run().await.expect("sessions").to_version.expect("one micro-batch applied");
    let raw_latest = open_table(lake, RAW.dir).await.unwrap().version().unwrap() as i64;
    assert!(applied + 4 <= raw_latest, "gold's marker ({applied}) is well behind raw ({raw_latest})");
    applied
}

fn stage(lake: &Lake) -> SessionsStage {
    SessionsStage {
        lake: lake.clone(),
        max_versions_per_batch: 8,
        max_rows_per_batch: 400_000,
        max_batches: sessionlake_model::crash::StopAfter::NEVER,
        show_progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_log_is_history_gone_and_the_snapshot_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, applied) = forced_gap(dir.path()).await;
    let gold_before = gold_content(&lake).await;

    // The stage finds the gap (HistoryGone at the first missing version)
    // and folds the whole raw table again: gold ends as a clean run's.
    let report = stage(&lake).run().await.expect("the gap is folded over");
    assert!(report.rebuilt_from_snapshot, "{report:?}");
    let raw_latest = open_table(&lake, RAW.dir).await.unwrap().version().unwrap() as i64;
    assert_eq!(report.to_version, Some(raw_latest));
    assert!(applied < raw_latest);
    let clean = clean_reference(dir.path(), 47).await;
    assert_eq!(gold_content(&lake).await, clean, "gold equals a run that never lost its history");
    let again = stage(&lake).run().await.unwrap();
    assert_eq!((again.batches, again.rebuilt_from_snapshot), (0, false), "the fold recorded the raw version");

    // The rebuild source is exactly the raw table, partition by partition.
    let source = RawSnapshot::open(&lake).await.unwrap().expect("raw exists");
    assert_eq!(source.version() as u64, open_table(&lake, RAW.dir).await.unwrap().version().unwrap());
    let mut rebuilt = Vec::new();
    for &day in source.days() {
        for batch in source.read_day(day).await.unwrap() {
            assert_eq!(batch.num_columns(), 5);
            rebuilt.extend(crate::util::render_batch(&batch));
        }
    }
    rebuilt.sort();
    let mut expected = rows(&lake, "SELECT event, session_id, player_id, country, ts FROM r_session_events").await;
    expected.sort();
    assert_eq!(rebuilt.len() as u64, count(&lake, "SELECT COUNT(*) FROM r_session_events").await);
    assert_eq!(rebuilt, expected);
    let dates = rows(&lake, "SELECT DISTINCT CAST(\"EVENT_DATE\" AS VARCHAR) FROM r_session_events").await;
    assert_eq!(source.days().len(), dates.len());

    // serve's rebuild source: every gold row, once.
    let gold = GoldSnapshot::open(&lake).await.unwrap().expect("gold exists");
    let mut images = Vec::new();
    for &day in gold.days() {
        images.extend(gold.read_day(day).await.unwrap());
    }
    let gold_now = gold_content(&lake).await;
    assert!(gold_before.len() < gold_now.len());
    assert_eq!(images.len(), gold_now.len());
    assert!(images.iter().all(|change| change.earlier.is_empty() && change.image.version == gold.version()));
    let ids: BTreeSet<&str> = images.iter().map(|change| change.image.session_id.as_str()).collect();
    let expected_ids: BTreeSet<&str> = gold_now.iter().map(|row| row[0].as_str()).collect();
    assert_eq!(ids, expected_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vacuumed_data_file_is_history_gone() {
    // Raw's commits add data files only (no `_change_data`): its change feed
    // reads the added files. Compaction then a vacuum with no retention, the
    // log kept, takes files the lagging stage's versions still name.
    let dir = tempfile::tempdir().unwrap();
    let lines = input_lines(dir.path(), 53);
    let lake = Lake::new(dir.path().join("lake"));
    land_in_pieces(dir.path(), &lake, &lines, 4, false).await;
    let applied = fold_one_micro_batch(&lake).await;
    let next = applied as u64 + 1;
    let commit = std::fs::read_to_string(lake.table_dir(&RAW).join(format!("_delta_log/{next:020}.json"))).unwrap();
    let added = commit
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|action| action.get("add")?.get("path")?.as_str().map(str::to_string))
        .expect("the raw merge adds files");
    let settings = MaintainSettings { log_retention: Duration::from_secs(1_000 * 86_400), ..immediate(false) };
    maintain(&lake, settings, ReaderPosition::Applied(None)).await;
    assert!(!lake.table_dir(&RAW).join(&added).exists(), "vacuum took {added}");
    assert!(commits_in_log(&lake, RAW).contains(&next), "the log still names it");
    let gold_before = gold_content(&lake).await;

    let report = stage(&lake).run().await.expect("the gap is folded over");
    assert!(report.rebuilt_from_snapshot, "a vacuumed data file is a gap too: {report:?}");
    assert!(gold_before.len() < gold_content(&lake).await.len());
    assert_eq!(gold_content(&lake).await, clean_reference(dir.path(), 53).await);
}

/// Gold of a clean run (no gap) over the same input lines, in a lake of its own.
async fn clean_reference(dir: &Path, seed: u64) -> Vec<Vec<String>> {
    let reference_dir = dir.join("clean-reference");
    std::fs::create_dir_all(&reference_dir).unwrap();
    let lines = input_lines(&reference_dir, seed);
    let lake = Lake::new(reference_dir.join("lake"));
    land_in_pieces(&reference_dir, &lake, &lines, 4, false).await;
    stage(&lake).run().await.expect("sessions");
    gold_content(&lake).await
}
