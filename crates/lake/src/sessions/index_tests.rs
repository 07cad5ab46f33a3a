use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sessionlake_model::ids::format_session_id;

use super::*;
use crate::schema::SESSIONS;

fn id(value: u128) -> String {
    format_session_id(value)
}

/// Change-feed rows: (session id, date, commit version).
fn changes(rows: &[(&str, i32, i64)]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("session_id", DataType::Utf8, false),
        Field::new("EVENT_DATE", DataType::Date32, false),
        Field::new("_commit_version", DataType::Int64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.0))),
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|row| row.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| row.2))),
        ],
    )
    .unwrap()
}

#[test]
fn every_recorded_session_is_found_on_its_date_and_no_other_is() {
    let mut index = SessionIndex::empty(3);
    for value in 0..1_000u128 {
        index.record(&id(value * 7919), 17_000 + (value % 40) as i32);
    }
    index.merge_overlay();
    for value in 1_000..1_500u128 {
        index.record(&id(value * 7919), 17_000 + (value % 40) as i32);
    }
    assert_eq!(index.len(), 1_500);
    assert_eq!(index.keys.len(), 1_000, "the first thousand were merged into the array");
    assert_eq!(index.overlay.len(), 500);
    for value in 0..1_500u128 {
        assert_eq!(index.date_of(&id(value * 7919)), Some(17_000 + (value % 40) as i32), "{value}");
        assert_eq!(index.date_of(&id(value * 7919 + 1)), None);
    }
    let asked = [id(7919), id(2 * 7919), id(1_499 * 7919), id(3)];
    assert_eq!(index.dates_of(asked.iter().map(String::as_str)), BTreeSet::from([17_001, 17_002, 17_019]));
    // Looked up as a batch (in key order), each answer is the single one:
    // from the array, the overlay, or none.
    let asked: Vec<String> = (0..1_500u128).rev().flat_map(|value| [id(value * 7919), id(value * 7919 + 1)]).collect();
    let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
    let each: Vec<Option<i32>> = asked.iter().map(|session_id| index.date_of(session_id)).collect();
    assert_eq!(each.iter().flatten().count(), 1_500);
    assert_eq!(index.date_of_each(&asked), each);
}

#[test]
fn ids_that_are_not_canonical_uuids_are_kept_exactly() {
    let mut index = SessionIndex::empty(0);
    let lower = "4a0c43c9-c43a-42ff-ba55-67563dfa35d4";
    let upper = "4A0C43C9-C43A-42FF-BA55-67563DFA35D4";
    index.record(lower, 1);
    index.record(upper, 2);
    index.record("not a uuid", 3);
    index.record("", 4);
    assert_eq!(index.date_of(lower), Some(1));
    assert_eq!(index.date_of(upper), Some(2), "another text is another session to gold");
    assert_eq!(index.date_of("4a0c43c9-c43a-42ff-ba55-67563dfa35D4"), None);
    assert_eq!(
        index.date_of_each(&[upper, "4a0c43c9-c43a-42ff-ba55-67563dfa35D4", lower]),
        vec![Some(2), None, Some(1)]
    );
    assert_eq!(index.date_of("not a uuid"), Some(3));
    assert_eq!(index.date_of(""), Some(4));
    assert_eq!((index.overlay.len(), index.other.len()), (1, 3));
}

#[test]
fn a_session_whose_date_moves_is_found_on_its_new_date_only() {
    let mut index = SessionIndex::empty(1);
    let (moved, kept, new) = (id(10), id(20), id(30));
    index.record(&moved, 17_120); // stored under its end's date
    index.record(&kept, 17_100);
    index.merge_overlay();
    // Version 2: the start arrives (the row moves 20 days back); version 3
    // inserts another session. Rows of a later commit first.
    let batch = changes(&[(&new, 17_200, 3), (&moved, 17_100, 2)]);
    index.apply_changes(&[batch], 3).unwrap();
    assert_eq!(index.version(), 3);
    assert_eq!(index.date_of(&moved), Some(17_100));
    assert_eq!(index.date_of(&kept), Some(17_100));
    assert_eq!(index.date_of(&new), Some(17_200));
    assert_eq!(index.dates_of([moved.as_str()]), BTreeSet::from([17_100]));
}

#[test]
fn catching_up_applies_commits_in_version_order_whatever_the_row_order() {
    let session = id(42);
    let mut index = SessionIndex::empty(4);
    index.record(&session, 17_000);
    // The same session changed by versions 5, 6 and 7, in three batches
    // that come back in no particular order.
    let batches = [
        changes(&[(&session, 17_007, 7)]),
        changes(&[(&session, 17_005, 5)]),
        changes(&[(&session, 17_006, 6), ("other", 16_000, 5)]),
    ];
    index.apply_changes(&batches, 7).unwrap();
    assert_eq!(index.date_of(&session), Some(17_007));
    assert_eq!(index.date_of("other"), Some(16_000));
    assert_eq!(index.version(), 7);
}

#[test]
fn merging_the_overlay_agrees_with_a_plain_map() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let mut index = SessionIndex::empty(0);
    let mut model: BTreeMap<String, i32> = BTreeMap::new();
    // Few distinct sessions, many records: updates hit both the array and
    // the overlay; merges at random instants.
    let pool: Vec<String> = (0..3_000).map(|_| id(rng.random::<u128>())).collect();
    for step in 0..40_000 {
        let session = &pool[rng.random_range(0..pool.len())];
        let date = rng.random_range(16_000..18_000);
        index.record(session, date);
        model.insert(session.clone(), date);
        if rng.random_range(0..2_000) == 0 || step == 39_999 {
            index.merge_overlay();
            assert!(index.keys.windows(2).all(|pair| pair[0] < pair[1]));
        }
    }
    assert!(index.overlay.is_empty());
    assert_eq!(index.len(), model.len());
    for session in &pool {
        assert_eq!(index.date_of(session), model.get(session).copied(), "{session}");
    }
}

#[test]
fn the_overlay_is_merged_when_it_reaches_its_limit() {
    let mut index = SessionIndex::empty(0);
    for value in 0..OVERLAY_LIMIT as u128 + 10 {
        index.record(&id(value.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)), (value % 7) as i32);
    }
    assert_eq!(index.keys.len(), OVERLAY_LIMIT);
    assert_eq!(index.overlay.len(), 10);
    assert_eq!(index.date_of(&id(3u128.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))), Some(3));
}

#[tokio::test]
async fn a_snapshot_loads_as_saved_and_a_damaged_or_foreign_one_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let gold = lake.open_or_create(&SESSIONS).await.unwrap();
    let version = gold_version(&gold);
    let mut index = SessionIndex::empty(version);
    for value in 0..5_000u128 {
        index.record(&id((value << 64) | value), (value % 30) as i32 + 17_000);
    }
    index.merge_overlay();
    index.record(&id(u128::MAX), -5);
    index.record("Not-A-UUID", 17_001);
    index.save(&lake, &gold).await.unwrap();
    let loaded = SessionIndex::load(&lake, &gold).await.unwrap().expect("a snapshot");
    assert_eq!(loaded, index, "overlay merged before saving: the same arrays and texts");
    assert_eq!(loaded.date_of(&id(u128::MAX)), Some(-5));

    let file = lake.table_dir(&SESSIONS).join(INDEX_SNAPSHOT_DIR).join(format!("{version:020}.idx"));
    let bytes = std::fs::read(&file).unwrap();
    // One date changed: the checksum catches it.
    let mut damaged = bytes.clone();
    let first_date = HEADER_LEN as usize + 16 * index.keys.len();
    damaged[first_date] ^= 1;
    std::fs::write(&file, &damaged).unwrap();
    assert_eq!(SessionIndex::load(&lake, &gold).await.unwrap(), None);
    // Cut short.
    std::fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
    assert_eq!(SessionIndex::load(&lake, &gold).await.unwrap(), None);

    // Another table (re-created at the same place) never trusts it.
    std::fs::write(&file, &bytes).unwrap();
    assert!(SessionIndex::load(&lake, &gold).await.unwrap().is_some());
    let other_dir = tempfile::tempdir().unwrap();
    let other = Lake::new(other_dir.path().join("lake"));
    let other_gold = other.open_or_create(&SESSIONS).await.unwrap();
    let other_file = other.table_dir(&SESSIONS).join(INDEX_SNAPSHOT_DIR);
    std::fs::create_dir_all(&other_file).unwrap();
    std::fs::write(other_file.join(format!("{version:020}.idx")), &bytes).unwrap();
    assert_eq!(SessionIndex::load(&other, &other_gold).await.unwrap(), None);
}

#[test]
fn key_buckets_find_what_a_binary_search_finds() {
    let mut random = ChaCha8Rng::seed_from_u64(11);
    for count in [0usize, 1, 15, 16, 17, 1_000, 40_000] {
        let mut keys: Vec<u128> = (0..count).map(|_| random.random()).collect();
        // Keys crowded at both ends of the range too, not only uniform ones.
        keys.extend([0, 1, 2, u128::MAX - 1, u128::MAX]);
        keys.sort_unstable();
        keys.dedup();
        let buckets = KeyBuckets::build(&keys);
        let mut asked: Vec<u128> =
            keys.iter().flat_map(|&key| [key, key.wrapping_add(1), key.wrapping_sub(1)]).collect();
        asked.extend((0..1_000).map(|_| random.random::<u128>()));
        for key in asked {
            assert_eq!(buckets.search(&keys, key), keys.binary_search(&key), "{count} keys, key {key}");
        }
        let stale = KeyBuckets::build(&keys[..keys.len() / 2]);
        if keys.len() > 1 {
            let last = *keys.last().unwrap();
            assert_eq!(stale.search(&keys, last), Ok(keys.len() - 1), "buckets built for other keys are not used");
        }
    }
}
