//! Finding keys in a table's Parquet files without reading the files whole.
//!
//! The files we write carry a Parquet bloom filter on their key column (raw's
//! `UNIQUE_ID_ROW`, gold's `session_id`; see [`with_key_filter`]). A lookup
//! ([`find_keys`]) reads a file's footer and the key column's filter of each
//! row group, and decodes the key column only of the row groups whose filter
//! may hold one of the keys. A filter never misses a key it holds, so a
//! skipped row group holds none of them; the decoded row groups then tell a
//! key from a false positive. A file without filters (written before they
//! existed, or by another writer) has its key column read whole: slower,
//! never wrong.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ArrowReaderOptions;
use deltalake::parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use deltalake::parquet::bloom_filter::Sbbf;
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use deltalake::parquet::file::properties::WriterPropertiesBuilder;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::{DeltaResult, DeltaTableError};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryFutureExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use twox_hash::XxHash64;

use crate::query::text_values;

/// The false-positive rate of a key filter. A lookup probes each row group
/// with every key wanted from its partition (up to a chunk's 200,000 ids):
/// at 1e-6 a row group is decoded for nothing about once in five such
/// lookups. The price is about 5 bytes per row.
pub(crate) const KEY_FPP: f64 = 1e-6;

/// `builder` with a bloom filter on `column` at [`KEY_FPP`]. The writer
/// allocates each row group's filter for `max_rows` keys (the row group
/// size when `None`: 1M rows, 8 MiB) and folds it to the keys it got, so a
/// writer with many files open at once (one per partition) passes a
/// bound of its own.
pub(crate) fn with_key_filter(
    builder: WriterPropertiesBuilder,
    column: &str,
    max_rows: Option<usize>,
) -> WriterPropertiesBuilder {
    let builder = builder
        .set_column_bloom_filter_enabled(ColumnPath::from(column), true)
        .set_column_bloom_filter_fpp(ColumnPath::from(column), KEY_FPP);
    match max_rows {
        Some(rows) => builder.set_column_bloom_filter_max_ndv(ColumnPath::from(column), rows.max(1) as u64),
        None => builder,
    }
}

/// One Parquet file of a table: where it is and how big (from its `add`).
#[derive(Debug, Clone)]
pub(crate) struct KeyFile {
    pub(crate) path: Path,
    pub(crate) size: u64,
}

/// What a lookup in one file found and cost.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// The values of the keys found (see [`find_keys`]).
    pub(crate) found: Vec<usize>,
    /// Row groups whose key column was decoded.
    pub(crate) row_groups_read: usize,
}

/// The key filters of files already looked into, by path, up to a bound
/// in bytes. A table's files never change, and each file of a
/// partition is probed again by every later write to that partition: with
/// the filters at hand, a lookup opens only the files that may hold a key.
/// Cheap to clone (a handle on one cache); one per table (the paths are
/// the table's own).
#[derive(Clone)]
pub(crate) struct FilterCache(moka::sync::Cache<Path, Arc<FileFilters>>);

impl FilterCache {
    /// An empty cache of at most `max_bytes` of filters (a filter takes
    /// about 5 bytes per row at [`KEY_FPP`]).
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, filters: &Arc<FileFilters>| filters.bytes.try_into().unwrap_or(u32::MAX))
                .build(),
        )
    }

    /// The filters of `file`, from the cache or read (and cached), with the
    /// reader when it had to be opened.
    async fn filters_of(
        &self,
        store: &Arc<dyn ObjectStore>,
        file: &KeyFile,
        column: &str,
    ) -> DeltaResult<(Arc<FileFilters>, Option<Opened>)> {
        if let Some(filters) = self.0.get(&file.path) {
            return Ok((filters, None));
        }
        let (mut builder, leaf) = open(store.clone(), file, column).await?;
        let mut row_groups = Vec::with_capacity(builder.metadata().num_row_groups());
        for row_group in 0..builder.metadata().num_row_groups() {
            let filter = builder.get_row_group_column_bloom_filter(row_group, leaf).await?;
            row_groups.push(filter.as_ref().map(KeyFilter::of).transpose()?);
        }
        let bytes = row_groups.iter().flatten().map(KeyFilter::bytes).sum::<usize>() + 64;
        let filters = Arc::new(FileFilters { row_groups, bytes });
        self.0.insert(file.path.clone(), filters.clone());
        Ok((filters, Some((builder, leaf))))
    }
}

/// A file's reader (its footer read) and the leaf index of the key column.
type Opened = (ParquetRecordBatchStreamBuilder<StoreFile>, usize);

impl std::fmt::Debug for FilterCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("FilterCache").field("files", &self.0.entry_count()).finish()
    }
}

/// One file's key filters, one per row group (`None`: that row group has
/// none, so it may hold any key).
pub(crate) struct FileFilters {
    row_groups: Vec<Option<KeyFilter>>,
    bytes: usize,
}

impl FileFilters {
    /// The row groups that may hold one of `keys`.
    fn row_groups_for(&self, keys: &Keys<'_>) -> Vec<usize> {
        let may_hold = |filter: &Option<KeyFilter>| match filter {
            Some(filter) => keys.hashes.iter().any(|&hash| filter.may_hold(hash)),
            None => true,
        };
        (0..self.row_groups.len()).filter(|&row_group| may_hold(&self.row_groups[row_group])).collect()
    }
}

/// Which of `keys` (key → a value of the caller's, such as a row number) are
/// in `column` of `file`: the values of those found, in no order. The
/// file's filters come from `cache` when it has them.
pub(crate) async fn find_keys(
    store: Arc<dyn ObjectStore>,
    file: &KeyFile,
    column: &str,
    keys: &Keys<'_>,
    cache: &FilterCache,
) -> DeltaResult<Found> {
    let (filters, opened) = cache.filters_of(&store, file, column).await?;
    let row_groups = filters.row_groups_for(keys);
    let mut found = Found { found: Vec::new(), row_groups_read: row_groups.len() };
    if row_groups.is_empty() {
        return Ok(found);
    }
    let (builder, leaf) = match opened {
        Some(opened) => opened,
        None => open(store, file, column).await?,
    };
    let mask = ProjectionMask::leaves(builder.parquet_schema(), [leaf]);
    let mut stream = builder.with_row_groups(row_groups).with_projection(mask).build()?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        for key in text_values(batch.column(0), column)?.flatten() {
            if let Some(&value) = keys.values.get(key) {
                found.found.push(value);
            }
        }
    }
    Ok(found)
}

/// Whether `column` of `file` may hold one of `keys`, by its filters alone
/// when each row group has one (false positives at [`KEY_FPP`]; a caller
/// that reads the file anyway tells them apart), else by its key column
/// ([`find_keys`]).
pub(crate) async fn may_hold_keys(
    store: Arc<dyn ObjectStore>,
    file: &KeyFile,
    column: &str,
    keys: &Keys<'_>,
    cache: &FilterCache,
) -> DeltaResult<bool> {
    let (filters, _) = cache.filters_of(&store, file, column).await?;
    if filters.row_groups.iter().all(Option::is_some) {
        return Ok(!filters.row_groups_for(keys).is_empty());
    }
    Ok(!find_keys(store, file, column, keys, cache).await?.found.is_empty())
}

/// A reader of `file` (its footer read) and the leaf index of `column`.
async fn open(store: Arc<dyn ObjectStore>, file: &KeyFile, column: &str) -> DeltaResult<Opened> {
    let reader = StoreFile { store, path: file.path.clone(), size: file.size };
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let leaf = builder.parquet_schema().columns().iter().position(|leaf| leaf.path().string() == column);
    match leaf {
        Some(leaf) => Ok((builder, leaf)),
        None => Err(DeltaTableError::Generic(format!("file {} has no column {column}", file.path))),
    }
}

/// The keys a lookup wants, each with a value of the caller's (such as a
/// row number) and its filter hash, computed once for all the files probed.
/// Every id a lookup decodes is looked up here, so the map hashes with
/// foldhash: SipHash over ~110-byte ids was a tenth of a lookup's time.
pub(crate) struct Keys<'a> {
    values: HashMap<&'a str, usize, foldhash::fast::RandomState>,
    hashes: Vec<u64>,
}

impl<'a> Keys<'a> {
    /// `values` (key → the caller's value; a repeated key keeps its last
    /// value) with their hashes.
    pub(crate) fn new(values: impl IntoIterator<Item = (&'a str, usize)>) -> Self {
        let values: HashMap<_, _, _> = values.into_iter().collect();
        let hashes = values.keys().map(|key| XxHash64::oneshot(0, key.as_bytes())).collect();
        Self { values, hashes }
    }
}

/// One row group's split-block bloom filter, as the Parquet format defines
/// it (xxHash64 with seed 0, 256-bit blocks of eight 32-bit words), probed
/// with hashes computed once per key: parquet's own `Sbbf` hashes the key
/// again for every filter it is checked against.
struct KeyFilter {
    blocks: Vec<[u32; 8]>,
}

/// The Parquet format's salts of the split-block filter's eight words.
const SALT: [u32; 8] = [0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d, 0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31];

impl KeyFilter {
    fn of(filter: &Sbbf) -> DeltaResult<Self> {
        let mut bitset = Vec::with_capacity(filter.num_blocks() * 32);
        filter.write_bitset(&mut bitset)?;
        let words: Vec<u32> =
            bitset.chunks_exact(4).map(|word| u32::from_le_bytes([word[0], word[1], word[2], word[3]])).collect();
        let blocks = words.chunks_exact(8).map(|block| std::array::from_fn(|i| block[i])).collect();
        Ok(Self { blocks })
    }

    /// Whether the key of `hash` may be in the row group (never `false`
    /// for one that is).
    fn may_hold(&self, hash: u64) -> bool {
        let block = &self.blocks[(((hash >> 32) * self.blocks.len() as u64) >> 32) as usize];
        let key = hash as u32;
        (0..8).all(|word| block[word] & (1 << (key.wrapping_mul(SALT[word]) >> 27)) != 0)
    }

    fn bytes(&self) -> usize {
        self.blocks.len() * 32
    }
}

/// A Parquet file in an object store, read by ranges (its footer, filters
/// and chosen column chunks only).
struct StoreFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

/// Bytes read with the footer: enough for a small file's metadata and its
/// filters in one request.
const FOOTER_PREFETCH: usize = 64 * 1024;

fn parquet_error(error: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(error))
}

impl AsyncFileReader for StoreFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, deltalake::parquet::errors::Result<Bytes>> {
        self.store.get_range(&self.path, range).map_err(parquet_error).boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, deltalake::parquet::errors::Result<Vec<Bytes>>> {
        async move { self.store.get_ranges(&self.path, &ranges).await.map_err(parquet_error) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, deltalake::parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::file::properties::WriterProperties;
    use object_store::memory::InMemory;

    use super::*;

    /// A file of ids `key-0` .. `key-{rows-1}` in row groups of 1,000 rows,
    /// with or without key filters, in a fresh in-memory store.
    async fn file_of_keys(rows: usize, filters: bool) -> (Arc<dyn ObjectStore>, KeyFile) {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        let ids = StringArray::from_iter_values((0..rows).map(|n| format!("key-{n}")));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)]).unwrap();
        let mut properties = WriterProperties::builder().set_max_row_group_row_count(Some(1_000));
        if filters {
            properties = with_key_filter(properties, "id", Some(rows));
        }
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(properties.build())).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let file = KeyFile { path: Path::from("part-0.parquet"), size: bytes.len() as u64 };
        store.put(&file.path, bytes.into()).await.unwrap();
        (store, file)
    }

    /// The values of `keys` found in `file` (sorted) and the row groups
    /// decoded, or the error.
    async fn found(
        store: &Arc<dyn ObjectStore>,
        file: &KeyFile,
        keys: &[&str],
        cache: &FilterCache,
    ) -> DeltaResult<(Vec<usize>, usize)> {
        let keys = Keys::new(keys.iter().enumerate().map(|(value, key)| (*key, value)));
        let mut found = find_keys(store.clone(), file, "id", &keys, cache).await?;
        found.found.sort_unstable();
        Ok((found.found, found.row_groups_read))
    }

    #[tokio::test]
    async fn filters_find_every_key_held_and_decode_only_the_row_groups_holding_one() {
        let (store, file) = file_of_keys(10_000, true).await;
        let cache = FilterCache::new(1 << 20);
        // key-1500 is in row group 1 of 10, key-9999 in row group 9; the
        // others are nowhere.
        let wanted = ["absent", "key-1500", "key-10000", "key-9999"];
        assert_eq!(found(&store, &file, &wanted, &cache).await.unwrap(), (vec![1, 3], 2));
        assert_eq!(found(&store, &file, &["absent", "key-x", "key-10000"], &cache).await.unwrap(), (vec![], 0));
    }

    #[test]
    fn key_filters_answer_as_parquets_own() {
        let mut filter = Sbbf::new_with_ndv_fpp(10_000, KEY_FPP).unwrap();
        for n in 0..10_000 {
            filter.insert(format!("key-{n}").as_str());
        }
        let ours = KeyFilter::of(&filter).unwrap();
        let mut positives = 0;
        for n in 0..200_000 {
            let key = format!("key-{n}");
            let hash = Keys::new([(key.as_str(), 0)]).hashes[0];
            assert_eq!(ours.may_hold(hash), filter.check(key.as_str()), "{key}");
            positives += usize::from(ours.may_hold(hash));
        }
        assert!((10_000..10_010).contains(&positives), "every key held, about no other: {positives}");
    }

    #[tokio::test]
    async fn a_file_without_filters_is_read_whole_and_still_answers_exactly() {
        let (store, file) = file_of_keys(10_000, false).await;
        let wanted = ["absent", "key-1500", "key-10000", "key-9999"];
        assert_eq!(found(&store, &file, &wanted, &FilterCache::new(1 << 20)).await.unwrap(), (vec![1, 3], 10));
    }

    #[tokio::test]
    async fn a_cached_file_is_opened_only_when_its_filters_may_hold_a_key() {
        let (store, file) = file_of_keys(10_000, true).await;
        let cache = FilterCache::new(1 << 20);
        assert_eq!(found(&store, &file, &["key-5"], &cache).await.unwrap(), (vec![0], 1));
        // With the file gone, keys its cached filters rule out are still
        // answered; one they may hold needs the file (and says so).
        store.delete(&file.path).await.unwrap();
        assert_eq!(found(&store, &file, &["absent", "key-10000"], &cache).await.unwrap(), (vec![], 0));
        assert!(found(&store, &file, &["key-5"], &cache).await.is_err());
        assert!(found(&store, &file, &["absent"], &FilterCache::new(1 << 20)).await.is_err());
    }
}
