//! The lake is a function of the *set* of input lines (DESIGN.md, "Order
//! independence"): the same lines landed as one file or as several, in
//! other orders, refined in other micro-batch sizes and with restarts
//! between commits, give identical raw and gold tables (write-time columns
//! aside) and the same rejected lines. A run compared with its own replay
//! cannot show this; these shapes of one input can.

use std::io::{Read, Write};
use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sessionlake_lake::Lake;
use sessionlake_lake::sessions::SessionsStage;
use sessionlake_model::time::{format_ts_micros, parse_ts_micros};

use crate::util::{generated, gold_content, ingest, raw, rows};

const MICROS_PER_MINUTE: i64 = 60_000_000;
const MICROS_PER_DAY: i64 = 24 * 60 * MICROS_PER_MINUTE;

/// One way of feeding the same lines through the pipeline.
struct Shape {
    name: &'static str,
    /// Lines shuffled with this seed first (`None`: file order; `Some(0)`: reversed).
    shuffle: Option<u64>,
    /// Files the lines are cut into (unequal sizes), landed last to first.
    files: usize,
    /// Run raw and sessions after each landed file (else once at the end).
    refine_after_each_file: bool,
    /// The sessions stage's batching.
    max_rows_per_batch: u64,
    max_versions_per_batch: u64,
    /// Stop the sessions stage after every micro-batch and start it again,
    /// as a crash right after each commit would.
    restart_after_each_batch: bool,
}

const SHAPES: [Shape; 4] = [
    Shape {
        name: "one file in file order, one micro-batch",
        shuffle: None,
        files: 1,
        refine_after_each_file: false,
        max_rows_per_batch: 10_000_000,
        max_versions_per_batch: 10_000,
        restart_after_each_batch: false,
    },
    Shape {
        name: "reversed lines, one file, two versions per micro-batch",
        shuffle: Some(0),
        files: 1,
        refine_after_each_file: false,
        max_rows_per_batch: 10_000_000,
        max_versions_per_batch: 2,
        restart_after_each_batch: false,
    },
    Shape {
        name: "shuffled into 3 files landed last first, refined after each, small micro-batches",
        shuffle: Some(7),
        files: 3,
        refine_after_each_file: true,
        max_rows_per_batch: 100,
        max_versions_per_batch: 5,
        restart_after_each_batch: false,
    },
    Shape {
        name: "shuffled into 5 files, refined at the end, restarted after every micro-batch",
        shuffle: Some(11),
        files: 5,
        refine_after_each_file: false,
        max_rows_per_batch: 400,
        max_versions_per_batch: 8,
        restart_after_each_batch: true,
    },
];

/// The input: a generated file with every anomaly (its own conflicting
/// repeats included), plus `extra` conflicting repeats of random valid
/// lines (ts moved by minutes or by a day, either way), plus crafted ties.
fn input_lines(dir: &Path, extra: usize) -> Vec<Vec<u8>> {
    let (file, truth) = generated(dir, 4_000, 77, 0.05);
    assert!(truth.conflicting_repeats >= 2, "the generator makes conflicting repeats");
    let mut text = Vec::new();
    bzip2::read::MultiBzDecoder::new(std::fs::File::open(file).unwrap()).read_to_end(&mut text).unwrap();
    let mut lines: Vec<Vec<u8>> = text.split(|&byte| byte == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(lines.pop(), Some(Vec::new()), "the file ends with a newline");
    // Any set of lines will do: keep the valid events of one week (and every
    // bad line), so that each shape merges a few dates, not forty.
    let week = parse_ts_micros("2016-11-03T00:00:00").unwrap()..parse_ts_micros("2016-11-10T00:00:00").unwrap();
    lines.retain(|line| match sessionlake_model::parse_line(line) {
        Ok(event) => week.contains(&event.ts_micros),
        Err(_) => true,
    });

    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut valid: Vec<serde_json::Map<String, serde_json::Value>> = lines
        .iter()
        .filter(|line| sessionlake_model::parse_line(line).is_ok())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    valid.shuffle(&mut rng);
    for (index, mut object) in valid.into_iter().take(extra).enumerate() {
        let ts = parse_ts_micros(object["ts"].as_str().unwrap()).unwrap();
        let sign = if index % 2 == 0 { 1 } else { -1 };
        let shift = if index % 4 < 2 { (1 + index as i64 % 29) * MICROS_PER_MINUTE } else { MICROS_PER_DAY };
        object.insert("ts".into(), format_ts_micros(ts + sign * shift).into());
        lines.push(serde_json::to_vec(&object).unwrap());
    }
    lines.extend(crafted_lines().into_iter().map(String::into_bytes));
    lines
}

const TIE_START: &str = "00000000-0000-4000-8000-00000000a001";
const MOVED_START: &str = "00000000-0000-4000-8000-00000000a002";
const TIE_END: &str = "00000000-0000-4000-8000-00000000a003";
const PLAYER_A: &str = "0000000000000000000000000000000a";
const PLAYER_B: &str = "0000000000000000000000000000000b";

/// Repeats that differ only where the rule's tie-breaks decide: starts at
/// one ts from other players and countries; a start repeated earlier, on
/// the previous date; ends at one ts from other players, with no start.
fn crafted_lines() -> Vec<String> {
    let start = |session: &str, ts: &str, player: &str, country: &str| {
        format!(
            r#"{{"event":"start","ts":"{ts}","session_id":"{session}","player_id":"{player}","country":"{country}"}}"#
        )
    };
    let end = |session: &str, ts: &str, player: &str| {
        format!(r#"{{"event":"end","ts":"{ts}","session_id":"{session}","player_id":"{player}"}}"#)
    };
    vec![
        start(TIE_START, "2016-11-05T10:00:00.000000", PLAYER_B, "FI"),
        start(TIE_START, "2016-11-05T10:00:00.000000", PLAYER_A, "SE"),
        start(TIE_START, "2016-11-05T10:00:00.000000", PLAYER_A, "IT"),
        end(TIE_START, "2016-11-05T11:00:00.000000", PLAYER_B),
        end(TIE_START, "2016-11-05T12:00:00.000000", PLAYER_B),
        start(MOVED_START, "2016-11-05T00:10:00.000000", PLAYER_A, "FI"),
        start(MOVED_START, "2016-11-04T23:59:00.000000", PLAYER_A, "FI"),
        end(TIE_END, "2016-11-06T08:00:00.000000", PLAYER_B),
        end(TIE_END, "2016-11-06T08:00:00.000000", PLAYER_A),
        end(TIE_END, "2016-11-06T07:00:00.000000", PLAYER_A),
    ]
}

fn write_bz2(path: &Path, lines: &[Vec<u8>]) {
    let mut encoder = bzip2::write::BzEncoder::new(std::fs::File::create(path).unwrap(), bzip2::Compression::fast());
    for line in lines {
        encoder.write_all(line).unwrap();
        encoder.write_all(b"\n").unwrap();
    }
    encoder.finish().unwrap();
}

/// The raw rows, rejected lines and gold rows one shape ends with.
#[derive(Debug, PartialEq)]
struct Tables {
    raw: Vec<Vec<String>>,
    rejected: Vec<Vec<String>>,
    gold: Vec<Vec<String>>,
}

async fn refine(lake: &Lake, shape: &Shape) {
    raw(lake, false).await;
    let stage = SessionsStage {
        lake: lake.clone(),
        max_versions_per_batch: shape.max_versions_per_batch,
        max_rows_per_batch: shape.max_rows_per_batch,
        max_batches: sessionlake_model::crash::StopAfter::from_option(shape.restart_after_each_batch.then_some(1)),
        show_progress: false,
    };
    loop {
        let report = stage.run().await.expect("sessions");
        if !shape.restart_after_each_batch || report.batches == 0 {
            break;
        }
    }
}

async fn run_shape(dir: &Path, lines: &[Vec<u8>], shape: &Shape) -> Tables {
    let mut lines: Vec<&Vec<u8>> = lines.iter().collect();
    match shape.shuffle {
        None => {}
        Some(0) => lines.reverse(),
        Some(seed) => lines.shuffle(&mut ChaCha8Rng::seed_from_u64(seed)),
    }
    // Unequal cuts: file k holds a share proportional to k + 1.
    let weights: usize = (1..=shape.files).sum();
    let mut files = Vec::new();
    let mut rest = lines.as_slice();
    for k in 1..=shape.files {
        let take = if k == shape.files { rest.len() } else { lines.len() * k / weights };
        let (head, tail) = rest.split_at(take.min(rest.len()));
        files.push(head.iter().map(|line| (*line).clone()).collect::<Vec<_>>());
        rest = tail;
    }
    let lake = Lake::new(dir.join("lake"));
    for (index, file_lines) in files.iter().enumerate().rev() {
        let path = dir.join(format!("part-{index}.jsonl.bz2"));
        write_bz2(&path, file_lines);
        ingest(&lake, &path).await;
        if shape.refine_after_each_file {
            refine(&lake, shape).await;
        }
    }
    refine(&lake, shape).await;
    let sorted = |mut rows: Vec<Vec<String>>| {
        rows.sort_unstable();
        rows
    };
    let raw_rows = rows(
        &lake,
        "SELECT \"UNIQUE_ID_ROW\", event, session_id, player_id, country, ts, CAST(\"EVENT_DATE\" AS VARCHAR) \
         FROM r_session_events",
    )
    .await;
    let distinct = raw_rows.iter().map(|row| &row[0]).collect::<std::collections::HashSet<_>>().len();
    assert_eq!(distinct, raw_rows.len(), "{}: UNIQUE_ID_ROW is unique: {:?}", shape.name, &raw_rows[..4]);
    Tables {
        raw: sorted(raw_rows),
        rejected: sorted(
            rows(&lake, "SELECT reason, encode(raw_bytes, 'hex') AS line FROM r_session_events_rejected").await,
        ),
        gold: sorted(gold_content(&lake).await),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_depend_on_the_set_of_lines_not_on_files_order_or_batches() {
    let dir = tempfile::tempdir().unwrap();
    let lines = input_lines(dir.path(), 300);
    let mut reference: Option<(&str, Tables)> = None;
    for (index, shape) in SHAPES.iter().enumerate() {
        let shape_dir = dir.path().join(format!("shape-{index}"));
        std::fs::create_dir(&shape_dir).unwrap();
        let started = std::time::Instant::now();
        let tables = run_shape(&shape_dir, &lines, shape).await;
        eprintln!("{}: {:.1} s", shape.name, started.elapsed().as_secs_f64());
        match &reference {
            None => {
                assert!(tables.raw.len() > 1_200 && tables.gold.len() > 700, "{} rows", tables.raw.len());
                reference = Some((shape.name, tables));
            }
            Some((reference_name, expected)) => {
                for (table, got, want) in [
                    ("raw", &tables.raw, &expected.raw),
                    ("rejected", &tables.rejected, &expected.rejected),
                    ("gold", &tables.gold, &expected.gold),
                ] {
                    let only = |a: &[Vec<String>], b: &[Vec<String>]| -> Vec<Vec<String>> {
                        a.iter().filter(|row| !b.contains(row)).take(3).cloned().collect()
                    };
                    assert!(
                        got == want,
                        "`{}` differs from `{reference_name}` in {table}: {} rows against {}; only in it: {:?}; \
                         only in the reference: {:?}",
                        shape.name,
                        got.len(),
                        want.len(),
                        only(got, want),
                        only(want, got),
                    );
                }
            }
        }
    }
    // The documented rule, on the crafted ties (same in every shape).
    let (_, tables) = reference.unwrap();
    let row = |session: &str| tables.gold.iter().find(|row| row[0] == session).cloned().unwrap();
    assert_eq!(
        row(TIE_START),
        [TIE_START, PLAYER_A, "IT", "2016-11-05T10:00:00Z", "2016-11-05T12:00:00Z", "1", "2016-11-05"],
        "starts at one ts: the smallest (player, country) decides; the latest end wins"
    );
    assert_eq!(
        row(MOVED_START),
        [MOVED_START, PLAYER_A, "FI", "2016-11-04T23:59:00Z", "NULL", "0", "2016-11-04"],
        "the earliest start wins, and its date files the session"
    );
    assert_eq!(
        row(TIE_END),
        [TIE_END, PLAYER_A, "NULL", "NULL", "2016-11-06T08:00:00Z", "1", "2016-11-06"],
        "with no start, the latest end decides, ties to the smallest player"
    );
}
