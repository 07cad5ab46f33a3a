//! Where gold files each session: an exact map session → gold date, so
//! that a micro-batch finds the partitions holding its sessions at a cost
//! proportional to the micro-batch, not to the gold table.
//!
//! [`SessionIndex`] reflects gold at one version. It is kept current from
//! gold's change data feed (the `insert` and `update_postimage` rows of the
//! versions after it: our own commits and every other writer's), and is
//! persisted now and then as a snapshot in gold's folder
//! (`_sessionlake_index/<version>.idx`, ignored by Delta readers), so a run
//! loads it and reads only the change feed since, instead of scanning gold.
//! A snapshot that is missing, damaged, or whose change feed since is gone
//! (`maintain` removed the history) is replaced by one scan of gold's
//! `session_id` and `EVENT_DATE`: the index is never approximate.
//!
//! Memory: session ids in canonical form (lowercase UUID with dashes, all
//! the raw parser ever writes) are kept as `u128` in a sorted array with a
//! parallel array of dates (20 bytes a session: 300 MB for 15M sessions),
//! plus a bounded hash map of sessions added since the array was last
//! merged. Any other text (another writer's) is kept exactly, as a string.
//! The map is exact, not hashed, so no collision can ever hide a partition.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Date32Type, Int64Type};
use deltalake::delta_datafusion::create_session;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sessionlake_model::ids::parse_session_id;
use sessionlake_model::tables::sessions as columns;
use tracing::{info, warn};

use crate::error::{LakeError, Result};
use crate::keys::FilterCache;
use crate::lake::Lake;
use crate::query;
use crate::schema::SESSIONS;

/// Sessions added since the sorted array was last merged, at most: past
/// this the map is merged into the array (a linear pass). 512 Ki entries
/// hold about 34 MB.
const OVERLAY_LIMIT: usize = 1 << 19;

/// The folder of index snapshots inside the gold table's folder.
pub const INDEX_SNAPSHOT_DIR: &str = "_sessionlake_index";

/// Gold versions read from the change feed per query while catching up.
const CATCH_UP_VERSIONS: u64 = 64;

/// An exact map session id → the date of the gold partition holding it,
/// as of one gold version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionIndex {
    /// The gold version this index reflects.
    version: i64,
    /// Canonical session ids, strictly increasing.
    keys: Vec<u128>,
    /// `dates[i]` is the date of `keys[i]`'s partition (days since the epoch).
    dates: Vec<i32>,
    /// Canonical ids not in `keys`: added since the last merge.
    overlay: HashMap<u128, i32>,
    /// Ids that are not canonical UUIDs, kept as they are.
    other: HashMap<String, i32>,
    /// Where each range of keys starts in `keys`: a lookup searches a few
    /// neighbours instead of the whole array (whose binary search misses
    /// the cache about 14 times at 15M sessions).
    buckets: KeyBuckets,
}

/// The positions in a sorted key array where each bucket of keys (their
/// top bits) starts: about 8 keys a bucket. Derived from the keys, so it
/// is no part of the index's value (equal whatever it holds), and ignored
/// unless built for the array as it is.
#[derive(Debug, Clone, Default)]
struct KeyBuckets {
    /// `keys.len()` when built.
    built_for: usize,
    /// Bits of a key that name its bucket.
    bits: u32,
    /// `starts[b]..starts[b + 1]`: the positions of bucket `b`'s keys.
    starts: Vec<u32>,
}

impl PartialEq for KeyBuckets {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl KeyBuckets {
    fn build(keys: &[u128]) -> Self {
        let bits = (usize::BITS - keys.len().leading_zeros()).saturating_sub(4).min(24);
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut position = 0;
        for bucket in 0..1usize << bits {
            starts.push(position as u32);
            while position < keys.len() && Self::bucket(keys[position], bits) == bucket {
                position += 1;
            }
        }
        starts.push(keys.len() as u32);
        Self { built_for: keys.len(), bits, starts }
    }

    fn bucket(key: u128, bits: u32) -> usize {
        key.checked_shr(128 - bits).unwrap_or(0) as usize
    }

    /// Where `key` is in `keys`, or would be inserted.
    fn search(&self, keys: &[u128], key: u128) -> std::result::Result<usize, usize> {
        if self.built_for != keys.len() || self.starts.is_empty() {
            return keys.binary_search(&key);
        }
        let bucket = Self::bucket(key, self.bits);
        let (low, high) = (self.starts[bucket] as usize, self.starts[bucket + 1] as usize);
        keys[low..high].binary_search(&key).map(|found| found + low).map_err(|slot| slot + low)
    }
}

/// The `u128` of a canonical session id; `None` for any other text (which
/// the index keeps as text: `4A0C…` and `4a0c…` are two sessions to gold).
fn canonical_key(session_id: &str) -> Option<u128> {
    let key = parse_session_id(session_id)?;
    (!session_id.bytes().any(|byte| byte.is_ascii_uppercase())).then_some(key)
}

impl SessionIndex {
    /// An index of no session, as of gold `version`.
    pub fn empty(version: i64) -> Self {
        Self { version, ..Self::default() }
    }

    /// The gold version this index reflects.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Sessions indexed.
    pub fn len(&self) -> usize {
        self.keys.len() + self.overlay.len() + self.other.len()
    }

    /// Whether no session is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The date of the partition holding `session_id`, if gold holds it.
    pub fn date_of(&self, session_id: &str) -> Option<i32> {
        match canonical_key(session_id) {
            Some(key) => match self.buckets.search(&self.keys, key) {
                Ok(position) => Some(self.dates[position]),
                Err(_) => self.overlay.get(&key).copied(),
            },
            None => self.other.get(session_id).copied(),
        }
    }

    /// [`Self::date_of`] of each of `session_ids`, in their order, looked up
    /// in key order: the index is then walked forward instead of at random,
    /// which matters once it outgrows the CPU caches (a micro-batch asks
    /// about 200,000 sessions of an index of 15M).
    pub fn date_of_each(&self, session_ids: &[&str]) -> Vec<Option<i32>> {
        let mut dates = vec![None; session_ids.len()];
        let mut keys = Vec::with_capacity(session_ids.len());
        for (position, session_id) in session_ids.iter().enumerate() {
            match canonical_key(session_id) {
                Some(key) => keys.push((key, position)),
                None => dates[position] = self.other.get(*session_id).copied(),
            }
        }
        keys.sort_unstable();
        for (key, position) in keys {
            dates[position] = match self.buckets.search(&self.keys, key) {
                Ok(found) => Some(self.dates[found]),
                Err(_) => self.overlay.get(&key).copied(),
            };
        }
        dates
    }

    /// The dates of the partitions holding any of `session_ids`.
    pub fn dates_of<'a>(&self, session_ids: impl IntoIterator<Item = &'a str>) -> BTreeSet<i32> {
        session_ids.into_iter().filter_map(|session_id| self.date_of(session_id)).collect()
    }

    /// Files `session_id` under `date` (a new session, or one that moved).
    pub fn record(&mut self, session_id: &str, date: i32) {
        match canonical_key(session_id) {
            Some(key) => match self.buckets.search(&self.keys, key) {
                Ok(position) => self.dates[position] = date,
                Err(_) => {
                    self.overlay.insert(key, date);
                    if self.overlay.len() >= OVERLAY_LIMIT {
                        self.merge_overlay();
                    }
                }
            },
            None => {
                self.other.insert(session_id.to_string(), date);
            }
        }
    }

    /// Files a session the index does not hold under `date`, without
    /// looking for it first.
    fn record_new(&mut self, session_id: &str, date: i32) {
        debug_assert_eq!(self.date_of(session_id), None, "{session_id} is new");
        match canonical_key(session_id) {
            Some(key) => {
                self.overlay.insert(key, date);
                if self.overlay.len() >= OVERLAY_LIMIT {
                    self.merge_overlay();
                }
            }
            None => {
                self.other.insert(session_id.to_string(), date);
            }
        }
    }

    /// Records the rows of `batch` (column 0: session id, column 1:
    /// `EVENT_DATE`) in their order.
    pub fn record_rows(&mut self, batch: &RecordBatch) -> Result<()> {
        let (session_ids, dates) = session_and_date_columns(batch)?;
        let session_ids = session_ids.as_string::<i32>();
        for row in 0..batch.num_rows() {
            // Neither is ever null in gold; a null is no session to find.
            if session_ids.is_valid(row) && dates.is_valid(row) {
                self.record(session_ids.value(row), dates.value(row));
            }
        }
        Ok(())
    }

    /// Applies change-feed rows of gold versions after [`Self::version`]
    /// up to `version` (column 0: session id, 1: `EVENT_DATE`, 2: commit
    /// version; post-images and inserts only): within the range, a
    /// session's newest row wins, whatever order the rows come in.
    pub fn apply_changes(&mut self, batches: &[RecordBatch], version: i64) -> Result<()> {
        debug_assert!(version >= self.version, "an index never goes back");
        let mut columns = Vec::with_capacity(batches.len());
        let mut order: Vec<(i64, u32, u32)> = Vec::new();
        for (batch_index, batch) in batches.iter().enumerate() {
            if batch.num_columns() < 3 {
                return Err(unexpected("change rows need a session id, a date and a commit version"));
            }
            let commit = cast(batch.column(2), &DataType::Int64)?;
            let commit = commit.as_primitive::<Int64Type>();
            order.extend((0..batch.num_rows()).map(|row| (commit.value(row), batch_index as u32, row as u32)));
            columns.push(session_and_date_columns(batch)?);
        }
        order.sort_unstable();
        for (_, batch_index, row) in order {
            let (session_ids, dates) = &columns[batch_index as usize];
            let (session_ids, row) = (session_ids.as_string::<i32>(), row as usize);
            if session_ids.is_valid(row) && dates.is_valid(row) {
                self.record(session_ids.value(row), dates.value(row));
            }
        }
        self.version = version;
        Ok(())
    }

    /// Moves the overlay into the sorted arrays (merging from the back, in
    /// place: no second copy of the arrays).
    fn merge_overlay(&mut self) {
        if self.overlay.is_empty() {
            return;
        }
        let mut pending: Vec<(u128, i32)> = self.overlay.drain().collect();
        pending.sort_unstable_by_key(|&(key, _)| key);
        let old_len = self.keys.len();
        let new_len = old_len + pending.len();
        self.keys.reserve_exact(pending.len());
        self.dates.reserve_exact(pending.len());
        self.keys.resize(new_len, 0);
        self.dates.resize(new_len, 0);
        let (mut read, mut write) = (old_len, new_len);
        for &(key, date) in pending.iter().rev() {
            while read > 0 && self.keys[read - 1] > key {
                read -= 1;
                write -= 1;
                self.keys[write] = self.keys[read];
                self.dates[write] = self.dates[read];
            }
            debug_assert!(read == 0 || self.keys[read - 1] != key, "overlay keys are not in the array");
            write -= 1;
            self.keys[write] = key;
            self.dates[write] = date;
        }
        debug_assert_eq!(read, write);
        debug_assert!(self.keys.windows(2).all(|pair| pair[0] < pair[1]));
        self.buckets = KeyBuckets::build(&self.keys);
    }

    /// Builds the index of gold as it is, by one scan of two columns.
    pub async fn scan(gold: &DeltaTable) -> Result<Self> {
        let version = gold_version(gold);
        let mut index = Self::empty(version);
        let snapshot = gold.snapshot().map_err(LakeError::delta(SESSIONS.name))?;
        if snapshot.log_data().num_files() == 0 {
            return Ok(index);
        }
        let rows: usize = snapshot.log_data().iter().filter_map(|file| file.num_records()).sum();
        index.keys.reserve_exact(rows);
        index.dates.reserve_exact(rows);
        let context = create_session().into_inner();
        let provider = gold.table_provider().await.map_err(LakeError::query(SESSIONS.name))?;
        context.register_table("gold", provider).map_err(LakeError::query(SESSIONS.name))?;
        let sql = format!(
            "SELECT {session}, \"{date}\" FROM gold",
            session = columns::SESSION_ID,
            date = columns::EVENT_DATE
        );
        let frame = context.sql(&sql).await.map_err(LakeError::query(SESSIONS.name))?;
        let mut batches = frame.execute_stream().await.map_err(LakeError::query(SESSIONS.name))?;
        while let Some(batch) = batches.next().await {
            index.record_rows(&batch.map_err(LakeError::query(SESSIONS.name))?)?;
        }
        index.merge_overlay();
        Ok(index)
    }

    /// Brings the index to `gold`'s version by reading gold's change feed
    /// since the index's version. The history being gone is
    /// [`LakeError::HistoryGone`] (the caller scans gold instead).
    pub async fn catch_up(&mut self, gold: &DeltaTable) -> Result<u64> {
        let latest = gold_version(gold);
        let sql = format!(
            "SELECT {session}, \"{date}\", CAST(_commit_version AS BIGINT) FROM changes \
             WHERE _change_type IN ('insert', 'update_postimage')",
            session = columns::SESSION_ID,
            date = columns::EVENT_DATE
        );
        let mut rows = 0;
        while self.version < latest {
            let from = self.version as u64 + 1;
            let to = (from + CATCH_UP_VERSIONS - 1).min(latest as u64);
            let batches = query::changes(gold, SESSIONS.name, from, to, &sql).await?;
            rows += batches.iter().map(|batch| batch.num_rows() as u64).sum::<u64>();
            self.apply_changes(&batches, to as i64)?;
        }
        Ok(rows)
    }
}

/// A table's version as the index counts it.
fn gold_version(gold: &DeltaTable) -> i64 {
    gold.version().map_or(-1, |version| version as i64)
}

/// Column 0 as UTF-8 text and column 1 as dates.
fn session_and_date_columns(batch: &RecordBatch) -> Result<(Arc<dyn Array>, &deltalake::arrow::array::Date32Array)> {
    if batch.num_columns() < 2 {
        return Err(unexpected("index rows need a session id and a date"));
    }
    // Text may come back as string views: read it as plain UTF-8.
    let session_ids = cast(batch.column(0), &DataType::Utf8)?;
    let dates =
        batch.column(1).as_primitive_opt::<Date32Type>().ok_or_else(|| unexpected("EVENT_DATE is not a date"))?;
    Ok((session_ids, dates))
}

fn unexpected(message: &str) -> LakeError {
    LakeError::Unexpected { table: SESSIONS.name, message: message.to_string() }
}

// ---------------------------------------------------------------------------
// Snapshots

/// The first bytes of a snapshot (the format's name and revision).
const MAGIC: &[u8; 8] = b"SLSIDX01";
/// The last bytes' tag, before the checksum.
const END_MAGIC: &[u8; 8] = b"SLSIDXND";
/// Header: magic, version, canonical count, other count, other bytes,
/// table id length (u64 each after the magic), then the id padded to 64.
const HEADER_LEN: u64 = 8 + 5 * 8 + 64;
/// Bytes per read and per uploaded part.
const CHUNK_BYTES: usize = 8 << 20;

/// A 64-bit checksum over the values of a snapshot, so that a damaged
/// file is rebuilt rather than trusted (a flipped date would hide a
/// partition).
#[derive(Debug, Clone, Copy)]
struct Checksum(u64);

impl Checksum {
    fn new() -> Self {
        Self(0x5e55_10f1_a4e1_d3c5)
    }

    fn add(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x0100_0000_01b3_9e37).rotate_left(29);
    }

    fn add_bytes(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        self.add(bytes.len() as u64);
    }
}

/// Where the snapshots of gold live, relative to the lake root.
fn snapshot_dir() -> ObjectPath {
    ObjectPath::from(SESSIONS.dir).join(INDEX_SNAPSHOT_DIR)
}

fn snapshot_path(version: i64) -> ObjectPath {
    snapshot_dir().join(format!("{version:020}.idx"))
}

/// The gold table's unique id (a re-created table must not trust the old
/// table's snapshots).
fn table_id(gold: &DeltaTable) -> Result<String> {
    let snapshot = gold.snapshot().map_err(LakeError::delta(SESSIONS.name))?;
    // The kernel keeps the id crate-private; its serde form is the
    // protocol's `metaData.id`.
    let metadata = serde_json::to_value(snapshot.metadata())
        .map_err(|error| unexpected(&format!("table metadata does not serialize: {error}")))?;
    match metadata["id"].as_str() {
        Some(id) if !id.is_empty() && id.len() <= 64 => Ok(id.to_string()),
        _ => Err(unexpected("table metadata has no usable id")),
    }
}

impl SessionIndex {
    /// Writes the index as the snapshot of its version (one object, put
    /// atomically in parts), then removes older snapshots.
    pub async fn save(&mut self, lake: &Lake, gold: &DeltaTable) -> Result<()> {
        self.merge_overlay();
        let store = lake.store()?;
        let id = table_id(gold)?;
        let path = snapshot_path(self.version);
        let mut others: Vec<(&String, &i32)> = self.other.iter().collect();
        others.sort_unstable();
        let other_bytes: u64 = others.iter().map(|(text, _)| 8 + text.len() as u64).sum();

        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        for value in [self.version as u64, self.keys.len() as u64, others.len() as u64, other_bytes, id.len() as u64] {
            header.extend_from_slice(&value.to_le_bytes());
        }
        let mut padded_id = [0u8; 64];
        padded_id[..id.len()].copy_from_slice(id.as_bytes());
        header.extend_from_slice(&padded_id);
        debug_assert_eq!(header.len() as u64, HEADER_LEN);

        let upload = store.put_multipart(&path).await.map_err(LakeError::store("writing", &path))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK_BYTES);
        let mut checksum = Checksum::new();
        checksum.add_bytes(&header);
        writer.write(&header);
        let mut buffer = Vec::with_capacity(CHUNK_BYTES);
        for keys in self.keys.chunks(CHUNK_BYTES / 16) {
            buffer.clear();
            for &key in keys {
                checksum.add(key as u64);
                checksum.add((key >> 64) as u64);
                buffer.extend_from_slice(&key.to_le_bytes());
            }
            writer.wait_for_capacity(4).await.map_err(LakeError::store("writing", &path))?;
            writer.write(&buffer);
        }
        for dates in self.dates.chunks(CHUNK_BYTES / 4) {
            buffer.clear();
            for &date in dates {
                checksum.add(date as u32 as u64);
                buffer.extend_from_slice(&date.to_le_bytes());
            }
            writer.wait_for_capacity(4).await.map_err(LakeError::store("writing", &path))?;
            writer.write(&buffer);
        }
        buffer.clear();
        for &(text, &date) in &others {
            buffer.extend_from_slice(&(text.len() as u32).to_le_bytes());
            buffer.extend_from_slice(text.as_bytes());
            buffer.extend_from_slice(&date.to_le_bytes());
        }
        checksum.add_bytes(&buffer);
        buffer.extend_from_slice(END_MAGIC);
        buffer.extend_from_slice(&checksum.0.to_le_bytes());
        writer.write(&buffer);
        writer.finish().await.map_err(LakeError::store("writing", &path))?;

        // Older snapshots are of no more use; a newer one (another writer's)
        // stays. Failing to remove one only leaves a file behind.
        for (version, older) in list_snapshots(store.as_ref()).await? {
            if version < self.version
                && let Err(error) = store.delete(&older).await
            {
                warn!(snapshot = %older, error = %error, "could not remove an old sessions index snapshot");
            }
        }
        Ok(())
    }

    /// The newest snapshot of `gold` at or before its version, if one is
    /// there and whole; a damaged one is reported and skipped.
    pub async fn load(lake: &Lake, gold: &DeltaTable) -> Result<Option<Self>> {
        let store = lake.store()?;
        let latest = gold_version(gold);
        let id = table_id(gold)?;
        let mut snapshots = list_snapshots(store.as_ref()).await?;
        snapshots.retain(|&(version, _)| version <= latest);
        snapshots.sort_unstable_by_key(|&(version, _)| std::cmp::Reverse(version));
        for (version, path) in snapshots {
            match read_snapshot(store.as_ref(), &path, &id).await {
                Ok(Some(index)) if index.version == version => return Ok(Some(index)),
                Ok(_) => warn!(snapshot = %path, "a sessions index snapshot does not match the gold table; skipped"),
                Err(error) => warn!(snapshot = %path, error = %error, "unreadable sessions index snapshot; skipped"),
            }
        }
        Ok(None)
    }
}

/// The snapshots in gold's folder, with their versions.
async fn list_snapshots(store: &dyn ObjectStore) -> Result<Vec<(i64, ObjectPath)>> {
    let dir = snapshot_dir();
    let mut listing = store.list(Some(&dir));
    let mut snapshots = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = match meta {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => break,
            Err(error) => return Err(LakeError::store("listing", &dir)(error)),
        };
        let version = meta.location.filename().and_then(|name| name.strip_suffix(".idx")?.parse::<i64>().ok());
        if let Some(version) = version {
            snapshots.push((version, meta.location));
        }
    }
    Ok(snapshots)
}

/// Reads one snapshot; `None` when it belongs to another table.
async fn read_snapshot(store: &dyn ObjectStore, path: &ObjectPath, table_id: &str) -> Result<Option<SessionIndex>> {
    let damaged = |what: &str| unexpected(&format!("sessions index snapshot {path}: {what}"));
    let get = |range: Range<u64>| async move {
        store.get_range(path, range).await.map_err(LakeError::store("reading", path))
    };
    let size = store.head(path).await.map_err(LakeError::store("reading", path))?.size;
    if size < HEADER_LEN + 16 {
        return Err(damaged("too short"));
    }
    let header = get(0..HEADER_LEN).await?;
    if &header[..8] != MAGIC {
        return Err(damaged("not a snapshot of this format"));
    }
    let field = |index: usize| u64::from_le_bytes(header[8 + 8 * index..16 + 8 * index].try_into().expect("8 bytes"));
    let (version, count, other_count, other_bytes, id_len) = (field(0) as i64, field(1), field(2), field(3), field(4));
    if id_len > 64 || header[48..48 + id_len as usize] != *table_id.as_bytes() {
        return Ok(None);
    }
    let keys_end = HEADER_LEN + 16 * count;
    let dates_end = keys_end + 4 * count;
    if dates_end.checked_add(other_bytes + 16) != Some(size) {
        return Err(damaged("its size does not match its header"));
    }
    let mut checksum = Checksum::new();
    checksum.add_bytes(&header);
    let mut index = SessionIndex::empty(version);
    index.keys.reserve_exact(count as usize);
    index.dates.reserve_exact(count as usize);
    let mut start = HEADER_LEN;
    while start < keys_end {
        let bytes = get(start..keys_end.min(start + CHUNK_BYTES as u64)).await?;
        for record in bytes.chunks_exact(16) {
            let key = u128::from_le_bytes(record.try_into().expect("16 bytes"));
            checksum.add(key as u64);
            checksum.add((key >> 64) as u64);
            if index.keys.last().is_some_and(|&last| last >= key) {
                return Err(damaged("session ids out of order"));
            }
            index.keys.push(key);
        }
        start += bytes.len() as u64;
    }
    while start < dates_end {
        let bytes = get(start..dates_end.min(start + CHUNK_BYTES as u64)).await?;
        for record in bytes.chunks_exact(4) {
            let date = i32::from_le_bytes(record.try_into().expect("4 bytes"));
            checksum.add(date as u32 as u64);
            index.dates.push(date);
        }
        start += bytes.len() as u64;
    }
    let tail = get(dates_end..size).await?;
    let (others, trailer) = tail.split_at(other_bytes as usize);
    checksum.add_bytes(others);
    let mut rest = others;
    for _ in 0..other_count {
        let length = rest.get(..4).ok_or_else(|| damaged("an id is cut"))?;
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
        let text = rest.get(4..4 + length).ok_or_else(|| damaged("an id is cut"))?;
        let text = std::str::from_utf8(text).map_err(|_| damaged("an id is not UTF-8"))?;
        let date = rest.get(4 + length..8 + length).ok_or_else(|| damaged("an id is cut"))?;
        index.other.insert(text.to_string(), i32::from_le_bytes(date.try_into().expect("4 bytes")));
        rest = &rest[8 + length..];
    }
    if !rest.is_empty() || &trailer[..8] != END_MAGIC {
        return Err(damaged("its end is not where its header says"));
    }
    if trailer[8..16] != checksum.0.to_le_bytes() {
        return Err(damaged("checksum mismatch"));
    }
    index.buckets = KeyBuckets::build(&index.keys);
    Ok(Some(index))
}

// ---------------------------------------------------------------------------
// One run's index

/// The index as one `SessionsStage::run` uses it: loaded (or built) on the
/// first MERGE into a gold table that has files, kept current before every
/// MERGE attempt, and saved at the end of the run when enough changed.
#[derive(Debug)]
pub(crate) struct RunIndex {
    lake: Lake,
    index: Option<SessionIndex>,
    /// The version of the snapshot the index was loaded from (`None`:
    /// built otherwise, so saving it saves a scan next time).
    snapshot_version: Option<i64>,
    /// Change-feed rows applied since that snapshot.
    rows_since_snapshot: u64,
    /// The session id filters of the gold files looked into: with the
    /// index, they take a lookup to the few files that hold a session.
    filters: FilterCache,
}

/// The bytes of gold's session id filters a run keeps: 64 MiB holds those of
/// about 12M sessions (files of 4,096 sessions take 32 KiB each).
const FILTER_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// A snapshot is rewritten when the change feed since it holds more than
/// this share of the index (1/8), or spans this many versions.
const SAVE_SHARE: u64 = 8;
const SAVE_VERSIONS: i64 = 64;

impl RunIndex {
    pub(crate) fn new(lake: Lake) -> Self {
        Self {
            lake,
            index: None,
            snapshot_version: None,
            rows_since_snapshot: 0,
            filters: FilterCache::new(FILTER_CACHE_BYTES),
        }
    }

    /// The run's cache of gold files' session id filters (a handle on it).
    pub(crate) fn filters(&self) -> FilterCache {
        self.filters.clone()
    }

    /// The index as of `gold`'s version.
    pub(crate) async fn current(&mut self, gold: &DeltaTable) -> Result<&SessionIndex> {
        if self.index.is_none() {
            self.index = Some(self.open(gold).await?);
        }
        let index = self.index.as_mut().expect("just opened");
        match index.catch_up(gold).await {
            Ok(rows) => self.rows_since_snapshot += rows,
            Err(LakeError::HistoryGone { version, missing, .. }) => {
                info!(version, missing, "gold's change feed since the sessions index is gone: scanning gold");
                *index = SessionIndex::scan(gold).await?;
                self.snapshot_version = None;
            }
            Err(error) => return Err(error),
        }
        Ok(self.index.as_ref().expect("opened"))
    }

    /// Records a commit this process just made (gold `version`, made on
    /// the index's version + 1) from the gold rows it wrote (column 2: the
    /// session id, column 8: `EVENT_DATE`): `updated` rows of sessions the
    /// index holds, `inserted` rows of sessions it does not. Reading them
    /// back from the change feed would cost a scan of what was just
    /// written; when the index is not at the version before (another
    /// writer committed in between, or no index yet), nothing is recorded
    /// and the next [`Self::current`] reads the feed as usual.
    pub(crate) fn record_own_commit(&mut self, version: i64, updated: &[RecordBatch], inserted: &RecordBatch) {
        let Some(index) = self.index.as_mut().filter(|index| index.version + 1 == version) else { return };
        fn rows(batch: &RecordBatch) -> impl Iterator<Item = (&str, i32)> {
            let (session_ids, dates) =
                (batch.column(2).as_string::<i32>(), batch.column(8).as_primitive::<Date32Type>());
            (0..batch.num_rows()).map(move |row| (session_ids.value(row), dates.value(row)))
        }
        for batch in updated {
            rows(batch).for_each(|(session_id, date)| index.record(session_id, date));
        }
        rows(inserted).for_each(|(session_id, date)| index.record_new(session_id, date));
        self.rows_since_snapshot +=
            (updated.iter().map(RecordBatch::num_rows).sum::<usize>() + inserted.num_rows()) as u64;
        index.version = version;
    }

    async fn open(&mut self, gold: &DeltaTable) -> Result<SessionIndex> {
        let has_files = gold.snapshot().map_err(LakeError::delta(SESSIONS.name))?.log_data().num_files() > 0;
        if !has_files {
            // Gold holds no session (yet): nothing to load or scan.
            return Ok(SessionIndex::empty(gold_version(gold)));
        }
        if let Some(index) = SessionIndex::load(&self.lake, gold).await? {
            info!(version = index.version, sessions = index.len(), "loaded the sessions index snapshot");
            self.snapshot_version = Some(index.version);
            return Ok(index);
        }
        let started = std::time::Instant::now();
        let index = SessionIndex::scan(gold).await?;
        info!(
            sessions = index.len(),
            seconds = started.elapsed().as_secs_f64(),
            "scanned gold into the sessions index"
        );
        Ok(index)
    }

    /// Saves the index (caught up to `gold`) when the next run would
    /// otherwise scan gold, or replay a long change feed.
    pub(crate) async fn save_if_due(&mut self, gold: &DeltaTable) -> Result<()> {
        let Some(index) = self.index.as_ref() else { return Ok(()) };
        let due = match self.snapshot_version {
            None => true,
            Some(snapshot) => {
                self.rows_since_snapshot * SAVE_SHARE > index.len() as u64
                    || gold_version(gold) - snapshot >= SAVE_VERSIONS
            }
        };
        if !due {
            return Ok(());
        }
        self.current(gold).await?;
        let index = self.index.as_mut().expect("current");
        index.save(&self.lake, gold).await?;
        self.snapshot_version = Some(index.version);
        self.rows_since_snapshot = 0;
        Ok(())
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
