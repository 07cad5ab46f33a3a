//! End-to-end checks of the generator: determinism, and the returned truth
//! against an independent recomputation from the parsed file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

use bzip2::bufread::{BzDecoder, MultiBzDecoder};
use sessionlake_generator::{GeneratorConfig, GeneratorError, Truth, generate, generate_file};
use sessionlake_model::time::{date_of_day, day_of_micros, parse_ts_micros};
use sessionlake_model::{Event, EventKind, RejectReason, parse_line};

fn generate_bytes(config: &GeneratorConfig) -> (Vec<u8>, Truth) {
    let mut bytes = Vec::new();
    let truth = generate(config, &mut bytes).expect("generates");
    (bytes, truth)
}

fn decompress(bytes: &[u8]) -> Vec<u8> {
    let mut text = Vec::new();
    MultiBzDecoder::new(bytes).read_to_end(&mut text).expect("valid bzip2");
    text
}

/// Lines as the pipeline sees them: split on '\n', trailing '\r' stripped,
/// a BOM at file start stripped.
fn lines(text: &[u8]) -> Vec<&[u8]> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(text);
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    assert_eq!(lines.pop(), Some(&b""[..]), "the file ends with a newline");
    lines.into_iter().map(|line| line.strip_suffix(b"\r").unwrap_or(line)).collect()
}

fn date(micros: i64) -> String {
    date_of_day(day_of_micros(micros)).to_string()
}

/// Recomputes every truth field from the parsed lines alone.
fn recompute(lines: &[&[u8]]) -> (Truth, BTreeSet<RejectReason>) {
    let mut rejected_by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut reasons = BTreeSet::new();
    let mut rows: HashMap<String, Event> = HashMap::new();
    let mut seen_lines: BTreeSet<&[u8]> = BTreeSet::new();
    let mut duplicate_lines = 0u64;
    let mut rejected_rows = 0u64;
    for line in lines {
        match parse_line(line) {
            Ok(event) => {
                let key = event.unique_id_row();
                if let Some(previous) = rows.get(&key) {
                    assert_eq!(*previous, event, "a repeat is the same event");
                    assert!(seen_lines.contains(line), "a repeat is byte-identical");
                    duplicate_lines += 1;
                } else {
                    rows.insert(key, event);
                    seen_lines.insert(line);
                }
            }
            Err(rejection) => {
                rejected_rows += 1;
                reasons.insert(rejection.reason);
                *rejected_by_reason.entry(rejection.reason.code().to_string()).or_default() += 1;
            }
        }
    }
    let mut raw_rows_by_date: BTreeMap<String, u64> = BTreeMap::new();
    // Gold's rule: the earliest start and the latest end of each session.
    let mut sessions: HashMap<u128, (Option<Event>, Option<Event>)> = HashMap::new();
    let mut conflicting_repeats = 0u64;
    for event in rows.values() {
        *raw_rows_by_date.entry(date(event.ts_micros)).or_default() += 1;
        let entry = sessions.entry(event.session_id).or_default();
        let (slot, replaces) = match event.kind {
            EventKind::Start => {
                let earlier = entry.0.is_none_or(|known| event.ts_micros < known.ts_micros);
                (&mut entry.0, earlier)
            }
            EventKind::End => {
                let later = entry.1.is_none_or(|known| event.ts_micros > known.ts_micros);
                (&mut entry.1, later)
            }
        };
        conflicting_repeats += u64::from(slot.is_some());
        if replaces {
            *slot = Some(*event);
        }
    }
    let cutoff = parse_ts_micros("2015-11-07T00:00:00").unwrap();
    let mut completed_by_country: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_player: BTreeMap<String, u64> = BTreeMap::new();
    let mut starts_2016: BTreeMap<String, u64> = BTreeMap::new();
    let mut sessions_by_event_date: BTreeMap<String, u64> = BTreeMap::new();
    let mut old = 0u64;
    for (start, end) in sessions.values() {
        if let Some(end) = end {
            *by_player.entry(end.player_id_text()).or_default() += 1;
            if let Some(start) = start {
                *completed_by_country.entry(start.country_text().unwrap().to_string()).or_default() += 1;
            }
        }
        if let Some(start) = start
            && date(start.ts_micros).starts_with("2016-")
        {
            *starts_2016.entry(start.country_text().unwrap().to_string()).or_default() += 1;
        }
        let anchor = start.or(*end).unwrap();
        *sessions_by_event_date.entry(date(anchor.ts_micros)).or_default() += 1;
        if anchor.ts_micros < cutoff {
            old += 1;
        }
    }
    let mut players: Vec<(String, u64)> = by_player.into_iter().collect();
    players.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    players.truncate(10);
    let best = starts_2016.values().copied().max();
    let top_start_country_2016 = starts_2016.iter().find(|(_, n)| Some(**n) == best).map(|(c, _)| c.clone());
    let truth = Truth {
        lines: lines.len() as u64,
        raw_rows: rows.len() as u64,
        duplicate_lines,
        conflicting_repeats,
        rejected_rows,
        rejected_by_reason,
        sessions: sessions.len() as u64,
        started_sessions: sessions.values().filter(|s| s.0.is_some()).count() as u64,
        completed_sessions: sessions.values().filter(|s| s.1.is_some()).count() as u64,
        completed_by_country,
        completed_by_player_top10: players,
        top_start_country_2016,
        raw_rows_by_date,
        sessions_by_event_date,
        sessions_before_2016_11_07_minus_1y: old,
        served_started_rows: sessions.values().filter(|s| s.0.is_some_and(|e| e.ts_micros >= cutoff)).count() as u64,
        served_completed_rows: sessions.values().filter(|s| s.1.is_some_and(|e| e.ts_micros >= cutoff)).count() as u64,
    };
    (truth, reasons)
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let config = GeneratorConfig { sessions: 1_500, seed: 7, anomaly_rate: 0.05 };
    let (first, first_truth) = generate_bytes(&config);
    let (second, second_truth) = generate_bytes(&config);
    assert_eq!(first, second);
    assert_eq!(first_truth, second_truth);
    let (other, _) = generate_bytes(&GeneratorConfig { seed: 8, ..config });
    assert_ne!(first, other);
}

#[test]
fn truth_matches_an_independent_parse_of_the_file() {
    let config = GeneratorConfig { sessions: 3_000, seed: 42, anomaly_rate: 0.05 };
    let (bytes, truth) = generate_bytes(&config);
    let text = decompress(&bytes);
    let lines = lines(&text);
    let (recomputed, reasons) = recompute(&lines);
    assert_eq!(recomputed, truth);
    assert_eq!(truth.raw_rows + truth.rejected_rows + truth.duplicate_lines, truth.lines);
    let expected: BTreeSet<RejectReason> =
        RejectReason::ALL.into_iter().filter(|reason| *reason != RejectReason::LineTooLong).collect();
    assert_eq!(reasons, expected);
    // Every planned session is there (anomalies drop a start or an end, never both).
    assert_eq!(truth.sessions, 3_000);
    // Truth round-trips through its JSON form.
    let back: Truth = serde_json::from_str(&truth.to_json_pretty()).unwrap();
    assert_eq!(back, truth);
}

#[test]
fn the_structural_anomalies_are_all_present() {
    let config = GeneratorConfig { sessions: 3_000, seed: 5, anomaly_rate: 0.02 };
    let (bytes, truth) = generate_bytes(&config);
    let text = decompress(&bytes);
    let lines = lines(&text);
    let mut first_position: HashMap<(u128, EventKind), usize> = HashMap::new();
    let mut events: HashMap<(u128, EventKind), Event> = HashMap::new();
    let mut extra_fields = 0;
    let (mut conflicts_same_date, mut conflicts_other_date) = (0u64, 0u64);
    let mut seen_events: std::collections::HashSet<Event> = std::collections::HashSet::new();
    for (position, line) in lines.iter().enumerate() {
        if let Ok(event) = parse_line(line) {
            first_position.entry((event.session_id, event.kind)).or_insert(position);
            let first_time = seen_events.insert(event);
            match events.entry((event.session_id, event.kind)) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(event);
                }
                std::collections::hash_map::Entry::Occupied(mut slot) if first_time => {
                    let known = slot.get().ts_micros;
                    if date(known) == date(event.ts_micros) {
                        conflicts_same_date += 1;
                    } else {
                        conflicts_other_date += 1;
                    }
                    // Gold's rule: the earliest start, the latest end.
                    let replaces = match event.kind {
                        EventKind::Start => event.ts_micros < known,
                        EventKind::End => event.ts_micros > known,
                    };
                    if replaces {
                        slot.insert(event);
                    }
                }
                std::collections::hash_map::Entry::Occupied(_) => {}
            }
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).unwrap();
            let expected_keys = if event.kind == EventKind::Start { 5 } else { 4 };
            if object.len() > expected_keys {
                extra_fields += 1;
            }
        }
    }
    let ids: BTreeSet<u128> = events.keys().map(|(id, _)| *id).collect();
    let (mut orphan_ends, mut orphan_starts, mut end_first, mut end_days_later, mut end_ts_earlier, mut old) =
        (0, 0, 0, 0, 0, 0);
    for id in ids {
        let start = events.get(&(id, EventKind::Start));
        let end = events.get(&(id, EventKind::End));
        match (start, end) {
            (None, Some(_)) => orphan_ends += 1,
            (Some(_), None) => orphan_starts += 1,
            (Some(start), Some(end)) => {
                let (start_at, end_at) =
                    (first_position[&(id, EventKind::Start)], first_position[&(id, EventKind::End)]);
                if end_at < start_at {
                    end_first += 1;
                }
                if end.ts_micros < start.ts_micros {
                    end_ts_earlier += 1;
                }
                // The end sits among lines a day or more later than the start.
                let neighbour_ts = lines[end_at.saturating_sub(1)..]
                    .iter()
                    .take(5)
                    .filter_map(|line| parse_line(line).ok())
                    .map(|event| event.ts_micros)
                    .max()
                    .unwrap();
                if neighbour_ts - start.ts_micros > 86_400_000_000 {
                    end_days_later += 1;
                }
            }
            (None, None) => unreachable!(),
        }
        let anchor = start.or(end).unwrap();
        if date(anchor.ts_micros).starts_with("2015-") {
            old += 1;
        }
    }
    for (name, count) in [
        ("orphan ends", orphan_ends),
        ("orphan starts", orphan_starts),
        ("ends before starts in the file", end_first),
        ("ends a day or more later in the file", end_days_later),
        ("end ts before start ts", end_ts_earlier),
        ("sessions from 2015", old),
        ("lines with an extra field", extra_fields),
        ("conflicting repeats on the same date", conflicts_same_date),
        ("conflicting repeats on another date", conflicts_other_date),
    ] {
        assert!(count >= 1, "{name}: {count}");
    }
    assert_eq!(old, truth.sessions_before_2016_11_07_minus_1y);
    assert_eq!(orphan_ends, truth.sessions - truth.started_sessions);
    assert_eq!(orphan_starts, truth.sessions - truth.completed_sessions);
    assert!(truth.duplicate_lines >= 1);
    assert_eq!(conflicts_same_date + conflicts_other_date, truth.conflicting_repeats);
}

#[test]
fn anomaly_rate_zero_is_clean() {
    let config = GeneratorConfig { sessions: 2_000, seed: 1, anomaly_rate: 0.0 };
    let (bytes, truth) = generate_bytes(&config);
    assert_eq!(truth.rejected_rows, 0);
    assert_eq!(truth.duplicate_lines, 0);
    assert_eq!(truth.rejected_by_reason, BTreeMap::new());
    assert_eq!(truth.sessions_before_2016_11_07_minus_1y, 0);
    assert_eq!(truth.started_sessions, 2_000);
    assert_eq!(truth.lines, truth.raw_rows);
    let text = decompress(&bytes);
    let lines = lines(&text);
    assert_eq!(lines.len() as u64, truth.lines);
    assert!(lines.iter().all(|line| parse_line(line).is_ok()));
    assert_eq!(recompute(&lines).0, truth);
    // Exactly the documented shape of a line.
    let first = std::str::from_utf8(lines[0]).unwrap();
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(first).unwrap();
    assert!(object.len() == 4 || object.len() == 5, "{first}");
}

#[test]
fn the_shape_is_like_the_real_file() {
    let config = GeneratorConfig { sessions: 5_000, seed: 3, anomaly_rate: 0.0 };
    let (bytes, truth) = generate_bytes(&config);
    let text = decompress(&bytes);
    let lines = lines(&text);
    let events: Vec<Event> = lines.iter().map(|line| parse_line(line).unwrap()).collect();
    // One country per player.
    let mut countries: HashMap<u128, [u8; 2]> = HashMap::new();
    for event in events.iter().filter(|e| e.kind == EventKind::Start) {
        assert_eq!(*countries.entry(event.player_id).or_insert(event.country.unwrap()), event.country.unwrap());
    }
    // Sessions per player: at most 50, the top players exactly 50.
    let mut per_player: HashMap<u128, u64> = HashMap::new();
    for event in events.iter().filter(|e| e.kind == EventKind::Start) {
        *per_player.entry(event.player_id).or_default() += 1;
    }
    assert_eq!(per_player.values().max(), Some(&50));
    assert_eq!(truth.completed_by_player_top10[0].1, 50);
    // Lines in time order, starts in 2016-11-01..2016-12-08, and ts texts with
    // exactly six fractional digits.
    assert!(events.windows(2).all(|pair| pair[0].ts_micros <= pair[1].ts_micros));
    assert!(truth.sessions_by_event_date.keys().all(|d| d.as_str() >= "2016-11-01" && d.as_str() < "2016-12-08"));
    let ts_lengths: BTreeSet<usize> = lines
        .iter()
        .map(|line| {
            let object: serde_json::Value = serde_json::from_slice(line).unwrap();
            object["ts"].as_str().unwrap().len()
        })
        .collect();
    assert_eq!(ts_lengths, BTreeSet::from([26]));
    // About 2% of sessions never end.
    let never_ending = truth.sessions - truth.completed_sessions;
    assert!((50..=150).contains(&never_ending), "{never_ending}");
}

#[test]
fn a_big_file_is_multi_stream() {
    let config = GeneratorConfig { sessions: 30_000, seed: 11, anomaly_rate: 0.01 };
    let (bytes, truth) = generate_bytes(&config);
    let text = decompress(&bytes);
    assert_eq!(lines(&text).len() as u64, truth.lines);
    // Expected streams: chunks close after the line reaching 4 MiB.
    let mut expected = 0;
    let mut size = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        size += line.len();
        if size >= 4 << 20 {
            expected += 1;
            size = 0;
        }
    }
    if size > 0 {
        expected += 1;
    }
    assert!(expected >= 2);
    // Count the streams by decoding them one at a time.
    let mut rest: &[u8] = &bytes;
    let mut streams = 0;
    let mut joined = Vec::new();
    while !rest.is_empty() {
        let mut decoder = BzDecoder::new(rest);
        decoder.read_to_end(&mut joined).unwrap();
        rest = decoder.into_inner();
        streams += 1;
    }
    assert_eq!(streams, expected);
    assert_eq!(joined, text);
}

#[test]
fn generate_file_writes_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl.bz2");
    let config = GeneratorConfig { sessions: 1_000, seed: 9, anomaly_rate: 0.01 };
    let truth = generate_file(&config, &path).unwrap();
    let (bytes, expected) = generate_bytes(&config);
    assert_eq!(truth, expected);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("events.jsonl.bz2")]);
}

#[test]
fn bad_configs_are_refused_and_empty_is_valid() {
    let bad = GeneratorConfig { anomaly_rate: 1.5, ..GeneratorConfig::default() };
    assert!(matches!(generate(&bad, Vec::new()), Err(GeneratorError::InvalidConfig(_))));
    let nan = GeneratorConfig { anomaly_rate: f64::NAN, ..GeneratorConfig::default() };
    assert!(matches!(generate(&nan, Vec::new()), Err(GeneratorError::InvalidConfig(_))));
    let (bytes, truth) = generate_bytes(&GeneratorConfig { sessions: 0, seed: 1, anomaly_rate: 0.0 });
    assert_eq!(decompress(&bytes), Vec::<u8>::new());
    assert_eq!(truth.lines, 0);
    assert_eq!(truth.top_start_country_2016, None);
}

#[test]
fn default_is_the_full_size() {
    let config = GeneratorConfig::default();
    assert_eq!(config.sessions, 500_000);
    assert_eq!(config.anomaly_rate, 0.0);
}

/// `cargo test --release -p sessionlake-generator -- --ignored --nocapture`
#[test]
#[ignore = "full size; run in release mode"]
fn full_size_timing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assignment_data.jsonl.bz2");
    for anomaly_rate in [0.0, 0.01] {
        let started = std::time::Instant::now();
        let truth = generate_file(&GeneratorConfig { anomaly_rate, ..GeneratorConfig::default() }, &path).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let size = std::fs::metadata(&path).unwrap().len();
        println!(
            "anomaly_rate {anomaly_rate}: {seconds:.2} s, {size} bytes, {} lines, {} sessions, top country 2016 {:?}, top player {:?}",
            truth.lines,
            truth.sessions,
            truth.top_start_country_2016,
            truth.completed_by_player_top10.first()
        );
        assert!(seconds < 30.0, "{seconds} s");
    }
}
