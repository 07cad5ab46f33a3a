//! Writing one micro-batch into gold: the upsert a Delta MERGE would do, in
//! a file layout that keeps what it rewrites small.
//!
//! Delta rewrites every file holding a changed row (copy on write: delta-rs
//! writes no deletion vectors), and delta-rs's MERGE writes a partition's
//! copied rows, updates and inserts into one file. Input in time order
//! completes, in every micro-batch, sessions that the previous ones opened,
//! so each active date's newest file — holding those among everything
//! inserted since — was rewritten by every MERGE: at 30× the full-size
//! file, 1.2–1.4M rows copied per 214k-row micro-batch, a cost that grows
//! with a date's size.
//!
//! Here a file holds either complete sessions (start and end known) or
//! incomplete ones, never both: completing a session rewrites a file of
//! incomplete sessions only, and a complete session changes again only on a
//! conflicting repeat. Per micro-batch:
//!
//! 1. the batch's sessions that gold holds (the exact session → date
//!    index says which, and under which date) are looked for in their
//!    date's files: those whose session id range (file statistics) and
//!    session id bloom filters ([`crate::keys`]) may hold one of them;
//! 2. those files are read whole: their sessions of the batch are folded
//!    ([`SessionUpdate::absorb`], the rule everywhere else), and the other
//!    rows of a file where one changes are copied;
//! 3. copied, updated and new rows are written, complete and incomplete
//!    sessions into separate files, and the change feed (inserts, update
//!    pre- and post-images) into `_change_data` files as Delta's MERGE
//!    writes it (a commit that only inserts needs none: its added files
//!    are its inserts);
//! 4. one commit removes the rewritten files and adds the new ones, as a
//!    `MERGE` whose read predicate is every date read or written, with the
//!    raw version applied as its application transaction. A concurrent
//!    writer that changed one of those dates makes it conflict, and the
//!    caller tries again with the index caught up.
//!
//! A file mixing both kinds (written before this layout, or compacted) is
//! split the next time one of its sessions changes. A file without filters
//! (written before them) has its session ids read to tell.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Date32Array, RecordBatch, StringArray};
use deltalake::arrow::compute::{
    SortColumn, cast, concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch,
};
use deltalake::arrow::datatypes::{DataType, Date32Type, Field, Schema, TimestampMicrosecondType};
use deltalake::datafile::writer::{DeltaWriter as FileWriter, WriterConfig};
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, AddCDCFile, Remove};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, MergePredicate};
use deltalake::table::config::TablePropertiesExt;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaResult, DeltaTable, DeltaTableError, ObjectStore, Path};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::prefix::PrefixStore;
use sessionlake_model::tables::{SESSIONS_APP_ID, sessions as columns};
use sessionlake_model::time::{date_of_day, day_of_date};

use super::aggregate::{GoldRow, SessionBatch, SessionUpdate, gold_rows};
use super::index::SessionIndex;
use crate::expr::dates_predicate;
use crate::keys::{FilterCache, KeyFile, Keys, may_hold_keys, with_key_filter};
use crate::schema::SESSIONS;
use crate::txn;

/// What one upsert did.
#[derive(Debug)]
pub(crate) struct Upserted {
    /// The table at the commit (or as read, when nothing was committed).
    pub(crate) table: DeltaTable,
    /// Sessions new to gold.
    pub(crate) inserted: u64,
    /// Sessions whose row changed.
    pub(crate) updated: u64,
    /// Unchanged rows rewritten because their file held a changed one.
    pub(crate) copied: u64,
    /// Files read whole to fold the stored sessions: those whose session id
    /// filters may hold one (a false positive is read and left as it is).
    pub(crate) files_read: usize,
    /// Files rewritten.
    pub(crate) files_rewritten: usize,
    /// Dates read or written (the commit's read predicate).
    pub(crate) dates: usize,
    /// The version committed, if any.
    pub(crate) version: Option<i64>,
    /// The rows of updated sessions and of new ones (gold rows: what the
    /// sessions index learns from the commit).
    pub(crate) filed: (Vec<RecordBatch>, RecordBatch),
    /// Milliseconds spent looking sessions up in the index, listing the
    /// files of their dates, probing those files' filters, folding, writing
    /// and committing.
    pub(crate) phase_ms: [u64; 6],
}

/// Upserts `batch` into `gold`, whose sessions `index` locates (as of
/// `gold`'s version) and whose files' id filters `filters` keeps,
/// recording `raw_version` (if any) in the same commit.
pub(crate) async fn upsert(
    gold: &DeltaTable,
    batch: &SessionBatch,
    index: &SessionIndex,
    filters: &FilterCache,
    raw_version: Option<i64>,
) -> DeltaResult<Upserted> {
    let now = Utc::now();
    let snapshot = gold.snapshot()?.clone();
    let store = gold.log_store().object_store(None);

    let mut clock = std::time::Instant::now();
    let mut phase_ms = [0u64; 6];
    let mut lap = |phase: usize| {
        phase_ms[phase] = clock.elapsed().as_millis() as u64;
        clock = std::time::Instant::now();
    };
    // 1. Where the stored sessions are.
    let mut stored: BTreeMap<i32, BTreeSet<&str>> = BTreeMap::new();
    let mut new_sessions = Vec::new();
    let sessions: Vec<(&String, &SessionUpdate)> = batch.sessions.iter().collect();
    let ids: Vec<&str> = sessions.iter().map(|(id, _)| id.as_str()).collect();
    for ((id, fold), date) in sessions.into_iter().zip(index.date_of_each(&ids)) {
        match date {
            Some(day) => {
                stored.entry(day).or_default().insert(id.as_str());
            }
            None => new_sessions.push(GoldRow { session_id: id, fold, inserted_micros: now.timestamp_micros() }),
        }
    }
    lap(0);
    let mut files_by_day: BTreeMap<i32, Vec<GoldFile>> = BTreeMap::new();
    for file in snapshot.log_data().iter() {
        let day = partition_day(&file.partition_values_map())?;
        if stored.contains_key(&day) {
            let stats = FileStats::parse(file.stats().as_deref());
            files_by_day.entry(day).or_default().push(GoldFile {
                path: file.object_store_path(),
                size: file.size() as u64,
                day,
                stats,
                remove: file.remove_action(true),
            });
        }
    }
    lap(1);
    let mut holding = Vec::new();
    let mut stored_sessions = 0;
    for (day, wanted) in &stored {
        stored_sessions += wanted.len();
        let mut files = files_by_day.remove(day).unwrap_or_default();
        files.retain(|file| file.stats.may_hold(wanted));
        let keys = Keys::new(wanted.iter().enumerate().map(|(n, id)| (*id, n)));
        let mut probes = futures::stream::iter(files)
            .map(|file| {
                let (store, keys) = (store.clone(), &keys);
                async move {
                    let may_hold = may_hold_keys(store, &file.key_file(), columns::SESSION_ID, keys, filters).await;
                    (file, may_hold)
                }
            })
            .buffered(LOOKUPS_IN_FLIGHT);
        while let Some((file, may_hold)) = probes.next().await {
            if may_hold? {
                holding.push(file);
            }
        }
    }
    let files_read = holding.len();

    lap(2);
    // 2. Fold the stored sessions that change.
    let now_micros = now.timestamp_micros();
    let mut rewrite = Rewrite::default();
    let mut reads = VecDeque::with_capacity(READ_AHEAD);
    let mut ahead = holding.iter();
    for file in &holding {
        while reads.len() < READ_AHEAD
            && let Some(next) = ahead.next()
        {
            reads.push_back(spawn_read(&store, next));
        }
        let rows = joined(reads.pop_front().expect("one read per file").await)?;
        rewrite.fold_file(&rows, file, batch, now_micros)?;
    }
    if rewrite.matched < stored_sessions {
        let dates: Vec<String> = stored.keys().map(|&day| date_of_day(day).to_string()).collect();
        return Err(DeltaTableError::Generic(format!(
            "the sessions index files {stored_sessions} of the batch's sessions under {dates}, but their files hold \
             only {matched}",
            dates = dates.join(", "),
            matched = rewrite.matched
        )));
    }
    let rewritten: Vec<&GoldFile> = holding.iter().filter(|file| rewrite.changed_files.contains(&file.path)).collect();

    lap(3);
    // 3. Write.
    let inserts = gold_rows(&new_sessions, now_micros)?;
    let mut dates: BTreeSet<i32> = holding.iter().map(|file| file.day).collect();
    dates.extend(days_of(&inserts));
    for rows in &rewrite.post_images {
        dates.extend(days_of(rows));
    }
    let mut outputs: Vec<RecordBatch> = rewrite.copied.clone();
    outputs.extend(rewrite.post_images.iter().cloned());
    outputs.push(inserts.clone());
    // Complete sessions, the others, and the change feed: written at once.
    let mut writes = Vec::new();
    for complete in [true, false] {
        let rows = outputs
            .iter()
            .map(|rows| filter_record_batch(rows, &completeness_mask(rows, complete)))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = concat_batches(&SESSIONS.arrow_schema(), &rows)?;
        let writer = RecordBatchWriter::for_table(gold)?.with_writer_properties(gold_file_properties());
        writes.push(tokio::spawn(write_sorted_files(writer, rows)));
    }
    if !rewritten.is_empty() {
        let mut changes = vec![with_change_type(&inserts, "insert")?];
        for (images, change_type) in
            [(&rewrite.pre_images, "update_preimage"), (&rewrite.post_images, "update_postimage")]
        {
            for rows in images {
                changes.push(with_change_type(rows, change_type)?);
            }
        }
        let config = WriterConfig::new(
            change_schema(),
            vec![columns::EVENT_DATE.to_string()],
            None,
            None,
            None,
            gold.snapshot()?.table_config().num_indexed_cols(),
            None,
        );
        writes.push(tokio::spawn(write_change_data(config, store.clone(), changes)));
    }
    let mut actions: Vec<Action> = rewritten.iter().map(|file| Action::Remove(file.remove.clone())).collect();
    for write in writes {
        actions.extend(joined(write.await)?);
    }
    lap(4);
    // 4. Commit.
    let mut report = Upserted {
        table: gold.clone(),
        inserted: inserts.num_rows() as u64,
        updated: rewrite.updated,
        copied: rewrite.copied.iter().map(|rows| rows.num_rows() as u64).sum(),
        files_read,
        files_rewritten: rewritten.len(),
        dates: dates.len(),
        version: None,
        filed: (Vec::new(), RecordBatch::new_empty(SESSIONS.arrow_schema())),
        phase_ms: [0; 6],
    };
    if actions.is_empty() && raw_version.is_none() {
        return Ok(report);
    }
    let predicate = dates_predicate(dates.iter().copied());
    let operation = DeltaOperation::Merge {
        merge_predicate: Some(format!("{predicate} AND target.{id} = source.{id}", id = columns::SESSION_ID)),
        predicate: Some(predicate),
        matched_predicates: vec![MergePredicate { action_type: "update".into(), predicate: None }],
        not_matched_predicates: vec![MergePredicate { action_type: "insert".into(), predicate: None }],
        not_matched_by_source_predicates: Vec::new(),
    };
    let markers = raw_version.map(|version| (SESSIONS_APP_ID.to_string(), version));
    let commit = CommitBuilder::from(txn::commit_with(markers))
        .with_actions(actions)
        .build(Some(&snapshot), gold.log_store(), operation)
        .await?;
    report.table.update_incremental(Some(commit.version())).await?;
    report.version = Some(commit.version() as i64);
    report.filed = (rewrite.post_images, inserts);
    lap(5);
    report.phase_ms = phase_ms;
    Ok(report)
}

/// Most rows in one gold file this upsert writes. A conflicting repeat of
/// a complete session, and every session completed, rewrites the file
/// holding it: bounding files bounds that copy whatever a date holds (at
/// the full size, a date holds about 13,000 sessions).
const ROWS_PER_FILE: usize = 4_096;

/// A data file of gold, as the upsert sees it.
struct GoldFile {
    path: Path,
    size: u64,
    day: i32,
    stats: FileStats,
    remove: Remove,
}

/// What a file's statistics (the add action's JSON) tell about its sessions.
#[derive(Debug, Default)]
struct FileStats {
    /// The smallest and largest session id, when recorded.
    ids: Option<(String, String)>,
}

impl FileStats {
    fn parse(stats: Option<&str>) -> Self {
        let Some(stats) = stats.and_then(|stats| serde_json::from_str::<serde_json::Value>(stats).ok()) else {
            return Self::default();
        };
        let bound = |kind: &str| stats[kind][columns::SESSION_ID].as_str().map(str::to_string);
        Self { ids: bound("minValues").zip(bound("maxValues")) }
    }

    /// Whether the file may hold one of `wanted`.
    fn may_hold(&self, wanted: &BTreeSet<&str>) -> bool {
        match &self.ids {
            Some((min, max)) => {
                wanted.range::<str, _>((Bound::Included(min.as_str()), Bound::Included(max.as_str()))).next().is_some()
            }
            None => !wanted.is_empty(),
        }
    }
}

/// The `EVENT_DATE` partition of a file, as a day number.
fn partition_day(values: &HashMap<String, Option<String>>) -> DeltaResult<i32> {
    let text = values.get(columns::EVENT_DATE).cloned().flatten().unwrap_or_default();
    let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|error| {
        DeltaTableError::Generic(format!(
            "a gold file's {} partition {text:?} is not a date: {error}",
            columns::EVENT_DATE
        ))
    })?;
    Ok(day_of_date(date))
}

/// Reads all rows of a file as gold rows (every column of [`SESSIONS`],
/// its date added).
async fn read_file(store: Arc<dyn ObjectStore>, file: GoldFileRef) -> DeltaResult<Vec<RecordBatch>> {
    let bytes = store.get(&file.path).await?.bytes().await?;
    let batches = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?.collect::<Result<Vec<RecordBatch>, _>>()?;
    let schema = SESSIONS.arrow_schema();
    batches
        .iter()
        .map(|batch| {
            let columns = schema
                .fields()
                .iter()
                .map(|field| match batch.column_by_name(field.name()) {
                    Some(values) => Ok(cast(values, field.data_type())?),
                    None if field.name() == columns::EVENT_DATE => {
                        Ok(Arc::new(Date32Array::from_value(file.day, batch.num_rows())) as ArrayRef)
                    }
                    None => {
                        Err(DeltaTableError::Generic(format!("gold file {} lacks column {}", file.path, field.name())))
                    }
                })
                .collect::<DeltaResult<Vec<_>>>()?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}

/// What reading a file needs to know of it.
struct GoldFileRef {
    path: Path,
    day: i32,
}

/// Files read at once (decoding is CPU work: one per core).
const READ_AHEAD: usize = 2;

/// Files whose filters are looked up at once: small reads, a few in flight
/// hide the store's latency.
const LOOKUPS_IN_FLIGHT: usize = 4;

impl GoldFile {
    fn key_file(&self) -> KeyFile {
        KeyFile { path: self.path.clone(), size: self.size }
    }
}

/// [`read_file`] as a task of its own, so that reads decode in parallel.
fn spawn_read(store: &Arc<dyn ObjectStore>, file: &GoldFile) -> tokio::task::JoinHandle<DeltaResult<Vec<RecordBatch>>> {
    let file = GoldFileRef { path: file.path.clone(), day: file.day };
    tokio::spawn(read_file(store.clone(), file))
}

/// The outcome of a task, its panic or cancellation as an error.
fn joined<T>(task: Result<DeltaResult<T>, tokio::task::JoinError>) -> DeltaResult<T> {
    task.map_err(|error| DeltaTableError::Generic(format!("a gold read or write task failed: {error}")))?
}

/// The rows that files holding changed sessions become.
#[derive(Default)]
struct Rewrite {
    /// Unchanged rows of rewritten files.
    copied: Vec<RecordBatch>,
    /// Changed rows as they were.
    pre_images: Vec<RecordBatch>,
    /// Changed rows as they are now.
    post_images: Vec<RecordBatch>,
    /// Rows changed.
    updated: u64,
    /// Files with a changed row.
    changed_files: HashSet<Path>,
    /// Stored rows of the batch's sessions, changed or not.
    matched: usize,
}

impl Rewrite {
    /// Folds the batch's sessions into the rows of `file` (read whole).
    fn fold_file(
        &mut self,
        rows: &[RecordBatch],
        file: &GoldFile,
        batch: &SessionBatch,
        now_micros: i64,
    ) -> DeltaResult<()> {
        let mut changed_any = false;
        let mut pending = Vec::new();
        for stored in rows {
            let session_ids = stored.column(2).as_string::<i32>();
            let player_ids = stored.column(1).as_string::<i32>();
            let countries = stored.column(0).as_string::<i32>();
            let starts = stored.column(3).as_primitive::<TimestampMicrosecondType>();
            let ends = stored.column(4).as_primitive::<TimestampMicrosecondType>();
            let inserted = stored.column(6).as_primitive::<TimestampMicrosecondType>();
            let mut changed = vec![false; stored.num_rows()];
            let mut folds = Vec::new();
            for (row, changes) in changed.iter_mut().enumerate() {
                let Some(update) = batch.sessions.get(session_ids.value(row)) else { continue };
                self.matched += 1;
                let before = SessionUpdate {
                    player_id: player_ids.value(row).to_string(),
                    country: countries.is_valid(row).then(|| countries.value(row).to_string()),
                    start_micros: starts.is_valid(row).then(|| starts.value(row)),
                    end_micros: ends.is_valid(row).then(|| ends.value(row)),
                };
                let mut after = before.clone();
                after.absorb(update);
                if after != before {
                    *changes = true;
                    folds.push((session_ids.value(row), after, inserted.value(row)));
                }
            }
            if folds.is_empty() {
                pending.push(stored.clone());
                continue;
            }
            changed_any = true;
            self.updated += folds.len() as u64;
            let post: Vec<GoldRow<'_>> = folds
                .iter()
                .map(|(id, fold, inserted_micros)| GoldRow { session_id: id, fold, inserted_micros: *inserted_micros })
                .collect();
            self.post_images.push(gold_rows(&post, now_micros)?);
            let changed = BooleanArray::from(changed);
            self.pre_images.push(filter_record_batch(stored, &changed)?);
            let unchanged = deltalake::arrow::compute::not(&changed)?;
            pending.push(filter_record_batch(stored, &unchanged)?);
        }
        if changed_any {
            self.changed_files.insert(file.path.clone());
            self.copied.extend(pending.into_iter().filter(|rows| rows.num_rows() > 0));
        }
        Ok(())
    }
}

/// The day numbers of gold rows.
fn days_of(rows: &RecordBatch) -> impl Iterator<Item = i32> + '_ {
    rows.column(8).as_primitive::<Date32Type>().values().iter().copied()
}

/// Which gold rows hold a complete session (`complete`) or not.
fn completeness_mask(rows: &RecordBatch, complete: bool) -> BooleanArray {
    let (starts, ends) = (rows.column(3), rows.column(4));
    (0..rows.num_rows()).map(|row| Some((starts.is_valid(row) && ends.is_valid(row)) == complete)).collect()
}

/// Writes gold rows as data files sorted by session id within each date,
/// of at most [`ROWS_PER_FILE`] rows each (so that a file's session id
/// range, in its statistics, narrows where a session can be), and returns
/// their add actions.
async fn write_sorted_files(mut writer: RecordBatchWriter, rows: RecordBatch) -> DeltaResult<Vec<Action>> {
    if rows.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let order = lexsort_to_indices(
        &[
            SortColumn { values: rows.column(8).clone(), options: None },
            SortColumn { values: rows.column(2).clone(), options: None },
        ],
        None,
    )?;
    let sorted = take_record_batch(&rows, &order)?;
    let days = sorted.column(8).as_primitive::<Date32Type>();
    let mut actions = Vec::new();
    let mut start = 0;
    while start < sorted.num_rows() {
        let day = days.value(start);
        let mut end = start + 1;
        while end < sorted.num_rows() && end - start < ROWS_PER_FILE && days.value(end) == day {
            end += 1;
        }
        writer.write(sorted.slice(start, end - start)).await?;
        actions.extend(writer.flush().await?.into_iter().map(Action::Add));
        start = end;
    }
    Ok(actions)
}

/// Parquet settings of the files the upsert writes: delta-rs's (Snappy),
/// without dictionaries for the id columns, whose values (nearly) never
/// repeat in a file: a dictionary only costs time there.
fn writer_properties() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_created_by(format!("sessionlake {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::SNAPPY)
        .set_column_dictionary_enabled(ColumnPath::from(columns::SESSION_ID), false)
        .set_column_dictionary_enabled(ColumnPath::from(columns::PLAYER_ID), false)
}

/// [`writer_properties`] of gold's own files, with a bloom filter on
/// `session_id` for the next upserts' lookups.
fn gold_file_properties() -> WriterProperties {
    with_key_filter(writer_properties(), columns::SESSION_ID, Some(ROWS_PER_FILE)).build()
}

/// Gold rows with a `_change_type` column.
fn with_change_type(rows: &RecordBatch, change_type: &str) -> DeltaResult<RecordBatch> {
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(StringArray::from_iter_values(std::iter::repeat_n(change_type, rows.num_rows()))));
    Ok(RecordBatch::try_new(change_schema(), columns)?)
}

/// Gold's schema plus `_change_type`: what a `_change_data` file holds.
fn change_schema() -> Arc<Schema> {
    let mut fields: Vec<Field> = SESSIONS.arrow_schema().fields().iter().map(|field| field.as_ref().clone()).collect();
    fields.push(Field::new("_change_type", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// Writes change rows as `_change_data` files (partitioned as gold is)
/// and returns their actions.
async fn write_change_data(
    config: WriterConfig,
    store: Arc<dyn ObjectStore>,
    changes: Vec<RecordBatch>,
) -> DeltaResult<Vec<Action>> {
    let mut writer = FileWriter::new(Arc::new(PrefixStore::new(store, "_change_data")), config)
        .with_writer_properties(writer_properties().build());
    for rows in changes.iter().filter(|rows| rows.num_rows() > 0) {
        writer.write(rows).await?;
    }
    Ok(writer
        .close()
        .await?
        .into_iter()
        .map(|add| {
            Action::Cdc(AddCDCFile {
                path: format!("_change_data/{}", add.path),
                size: add.size,
                partition_values: add.partition_values,
                data_change: false,
                tags: add.tags,
            })
        })
        .collect())
}
