//! Reading a landed file as a stream of chunks: bzip2 decompressed on one
//! thread (on two, in order, for a multi-stream file such as pbzip2 or our
//! generator write), lines split and parsed on another, and handed on in
//! [`Chunk`]s of consecutive lines bounded by [`ChunkLimits`]. Whatever the
//! file's size, what is held at once is a few decompressed blocks, the
//! chunk being filled and the chunks the consumer has not taken yet (the
//! channel holds one): memory is bounded by the limits, not by the file.
//!
//! A line is never held whole past [`MAX_LINE_BYTES`] + 1 bytes: a longer
//! one is rejected as `line_too_long` with its first [`MAX_LINE_BYTES`]
//! bytes kept, however long it runs (a file without a newline included).

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bzip2::read::MultiBzDecoder;
use sessionlake_model::{Event, MAX_LINE_BYTES, RejectReason, Rejection, parse_line};

use crate::error::{LakeError, Result};

/// A line that failed validation.
#[derive(Debug, Clone)]
pub struct RejectedLine {
    /// 1-based line number in the decompressed file.
    pub line_number: u64,
    /// The exact bytes (terminator stripped); for a `line_too_long` line,
    /// its first [`MAX_LINE_BYTES`] bytes.
    pub bytes: Vec<u8>,
    /// Why.
    pub rejection: Rejection,
}

/// How large one chunk of a landed file may grow: it is closed at the
/// first line that reaches either limit. Every line becomes at most one row
/// (raw or rejected) and a row's text is at most its line's bytes (three
/// times that for a rejected line's lossy text), so `max_bytes` well under
/// 2 GiB keeps every Arrow column of a chunk within its 32-bit offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Most lines in one chunk.
    pub max_lines: u64,
    /// Most decompressed bytes in one chunk (the line that crosses it
    /// included).
    pub max_bytes: u64,
}

impl ChunkLimits {
    /// The largest `max_bytes` accepted: with one more line over it and
    /// lossy text three times as long, still under 2 GiB per column.
    pub const MAX_BYTES_LIMIT: u64 = 512 << 20;

    /// Checks the limits, with a message a user can act on.
    pub fn validate(self) -> std::result::Result<Self, String> {
        if self.max_lines == 0 {
            return Err("the chunk line limit must be at least 1".into());
        }
        if self.max_bytes == 0 || self.max_bytes > Self::MAX_BYTES_LIMIT {
            return Err(format!(
                "the chunk byte limit must be between 1 and {} MiB (Arrow's 32-bit offsets)",
                Self::MAX_BYTES_LIMIT >> 20
            ));
        }
        Ok(self)
    }
}

impl Default for ChunkLimits {
    /// 200,000 lines or 64 MiB: five merge commits for the full-size
    /// file, and a stage that stays far under 1 GiB (peak RSS 297 MiB at
    /// the full size, 521 MiB at 30×; 1,000,000-line chunks reached
    /// 936 MiB at 10× and were no faster).
    fn default() -> Self {
        Self { max_lines: 200_000, max_bytes: 64 << 20 }
    }
}

/// Consecutive lines of a landed file, parsed.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Number of the chunk's first line (1-based).
    pub first_line: u64,
    /// Number of its last line (`first_line - 1` for an empty chunk).
    pub last_line: u64,
    /// The file ends with this chunk, and it decompressed whole.
    pub is_last: bool,
    /// Valid events per event day (days since epoch), in file order.
    pub days: BTreeMap<i32, Vec<Event>>,
    /// Rejected lines, in file order.
    pub rejected: Vec<RejectedLine>,
    /// Decompressed bytes of its lines (terminators included).
    pub bytes: u64,
}

impl Chunk {
    fn starting_at(first_line: u64) -> Self {
        Self { first_line, last_line: first_line - 1, ..Self::default() }
    }

    /// Lines in the chunk.
    pub fn lines(&self) -> u64 {
        self.last_line + 1 - self.first_line
    }

    /// Valid events read (duplicates included).
    pub fn valid_events(&self) -> u64 {
        self.days.values().map(|events| events.len() as u64).sum()
    }

    /// Rejected lines per reason.
    pub fn rejected_by_reason(&self) -> BTreeMap<RejectReason, u64> {
        let mut counts = BTreeMap::new();
        for line in &self.rejected {
            *counts.entry(line.rejection.reason).or_insert(0) += 1;
        }
        counts
    }

    fn is_full(&self, limits: ChunkLimits) -> bool {
        self.lines() >= limits.max_lines || self.bytes >= limits.max_bytes
    }

    /// Parses one line (`kept` is the line, or its first bytes when it is
    /// longer than the limit: `length` is its whole length).
    fn accept_line(&mut self, kept: &[u8], length: u64) {
        self.last_line += 1;
        self.bytes += length + 1;
        let line_number = self.last_line;
        let outcome = if length > kept.len() as u64 {
            Err(Rejection::new(RejectReason::LineTooLong, String::new()))
        } else {
            let mut line = kept.strip_suffix(b"\r").unwrap_or(kept);
            if line_number == 1 {
                line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
            }
            parse_line(line)
        };
        match outcome {
            Ok(event) => self.days.entry(event.event_day()).or_default().push(event),
            Err(mut rejection) => {
                let mut bytes = kept;
                if rejection.reason == RejectReason::LineTooLong {
                    // The same words whether the line was buffered whole or not.
                    rejection.message = format!(
                        "line has {length} bytes, more than the limit of {MAX_LINE_BYTES}; its first \
                         {MAX_LINE_BYTES} bytes are kept"
                    );
                    bytes = &kept[..kept.len().min(MAX_LINE_BYTES)];
                }
                self.rejected.push(RejectedLine { line_number, bytes: bytes.to_vec(), rejection });
            }
        }
    }
}

/// Splits decompressed blocks into lines. A line that spans blocks is
/// joined, but never buffered past [`MAX_LINE_BYTES`] + 1 bytes (enough to
/// tell a line of exactly the limit plus a CR from a longer one): past
/// that only its length is counted.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// The start of the line the last block ended in.
    carry: Vec<u8>,
    /// That line's whole length so far.
    carry_length: u64,
    /// The largest the carry ever was (for tests of the bound).
    most_buffered: usize,
}

impl LineSplitter {
    const KEEP: usize = MAX_LINE_BYTES + 1;

    /// Calls `on_line(kept, length)` for every line `block` completes.
    pub fn push(&mut self, block: &[u8], mut on_line: impl FnMut(&[u8], u64)) {
        let mut rest = block;
        if self.carry_length > 0 {
            match memchr(b'\n', rest) {
                Some(end) => {
                    self.extend_carry(&rest[..end]);
                    on_line(&self.carry, self.carry_length);
                    self.carry.clear();
                    self.carry_length = 0;
                    rest = &rest[end + 1..];
                }
                None => {
                    self.extend_carry(rest);
                    return;
                }
            }
        }
        while let Some(end) = memchr(b'\n', rest) {
            let line = &rest[..end];
            on_line(&line[..line.len().min(Self::KEEP)], line.len() as u64);
            rest = &rest[end + 1..];
        }
        self.extend_carry(rest);
    }

    /// Calls `on_line` for a last line without a terminator, if any.
    pub fn finish(&mut self, mut on_line: impl FnMut(&[u8], u64)) {
        if self.carry_length > 0 {
            on_line(&self.carry, self.carry_length);
            self.carry.clear();
            self.carry_length = 0;
        }
    }

    /// The most bytes of one line ever buffered.
    pub fn most_buffered(&self) -> usize {
        self.most_buffered
    }

    fn extend_carry(&mut self, bytes: &[u8]) {
        let room = Self::KEEP.saturating_sub(self.carry.len());
        self.carry.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.carry_length += bytes.len() as u64;
        self.most_buffered = self.most_buffered.max(self.carry.len());
    }
}

/// What reading a whole file found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadSummary {
    /// Lines in the file (skipped ones included).
    pub lines: u64,
    /// Decompressed bytes.
    pub bytes: u64,
}

const BLOCK_BYTES: usize = 4 << 20;

/// Decompresses and parses `path`, handing its lines after the first
/// `skip_lines` to `deliver` in chunks bounded by `limits`; `deliver`
/// returns false to stop early. The last chunk (`is_last`, maybe empty) is
/// delivered only once the whole file decompressed: a decompression error
/// is returned instead. Chunks before it are delivered as they fill, so
/// for a file larger than one chunk an error near its end comes after
/// earlier chunks were delivered. `on_bytes` is called with the number of
/// compressed bytes consumed so far (for a progress bar).
pub fn read_chunks(
    path: &Path,
    skip_lines: u64,
    limits: ChunkLimits,
    on_bytes: impl Fn(u64) + Send + 'static,
    mut deliver: impl FnMut(Chunk) -> bool,
) -> Result<ReadSummary> {
    let file = std::fs::File::open(path).map_err(LakeError::io("opening", path))?;
    let (sender, receiver) = mpsc::sync_channel::<Vec<u8>>(4);
    let owned_path = path.to_path_buf();
    let segments = split_streams(path, SEGMENT_BYTES)?;
    let decompressor = std::thread::Builder::new()
        .name("decompress".into())
        .spawn(move || {
            if segments.len() > 1 {
                decompress_parallel(&owned_path, &segments, sender, on_bytes)
            } else {
                decompress_blocks(file, owned_path, sender, on_bytes)
            }
        })
        .map_err(LakeError::io("spawning a thread for", path))?;

    let mut builder = ChunkBuilder {
        summary: ReadSummary::default(),
        skip_lines,
        limits,
        chunk: Chunk::starting_at(skip_lines + 1),
        deliver: &mut deliver,
        stopped: false,
    };
    let mut splitter = LineSplitter::default();
    for block in receiver {
        builder.summary.bytes += block.len() as u64;
        splitter.push(&block, |kept, length| builder.line(kept, length));
        if builder.stopped {
            break;
        }
    }
    // Decompression errors surface here, after the channel closed.
    decompressor
        .join()
        .map_err(|_| LakeError::Corrupt { path: path.to_path_buf(), message: "decompressor panicked".into() })??;
    splitter.finish(|kept, length| builder.line(kept, length));
    if !builder.stopped {
        let mut last = builder.chunk;
        last.is_last = true;
        (builder.deliver)(last);
    }
    Ok(builder.summary)
}

/// Fills chunks from lines and hands on the full ones.
struct ChunkBuilder<'a, Deliver> {
    summary: ReadSummary,
    skip_lines: u64,
    limits: ChunkLimits,
    chunk: Chunk,
    deliver: &'a mut Deliver,
    stopped: bool,
}

impl<Deliver: FnMut(Chunk) -> bool> ChunkBuilder<'_, Deliver> {
    fn line(&mut self, kept: &[u8], length: u64) {
        self.summary.lines += 1;
        if self.summary.lines <= self.skip_lines || self.stopped {
            return;
        }
        self.chunk.accept_line(kept, length);
        if self.chunk.is_full(self.limits) {
            let next = Chunk::starting_at(self.chunk.last_line + 1);
            self.stopped = !(self.deliver)(std::mem::replace(&mut self.chunk, next));
        }
    }
}

/// Everything read from one file, in memory: for tests and small files
/// (the raw stage streams with [`read_chunks`]).
#[derive(Debug, Default)]
pub struct ParsedFile {
    /// Lines read.
    pub lines: u64,
    /// Valid events per event day (days since epoch), in file order.
    pub days: BTreeMap<i32, Vec<Event>>,
    /// Rejected lines, in file order.
    pub rejected: Vec<RejectedLine>,
    /// Decompressed bytes.
    pub bytes: u64,
}

/// Reads a whole file into memory (see [`ParsedFile`]).
pub fn read_landed_file(path: &Path, on_bytes: impl Fn(u64) + Send + 'static) -> Result<ParsedFile> {
    let mut parsed = ParsedFile::default();
    let limits = ChunkLimits { max_lines: u64::MAX, max_bytes: u64::MAX };
    let summary = read_chunks(path, 0, limits, on_bytes, |chunk| {
        for (day, events) in chunk.days {
            parsed.days.entry(day).or_default().extend(events);
        }
        parsed.rejected.extend(chunk.rejected);
        true
    })?;
    parsed.lines = summary.lines;
    parsed.bytes = summary.bytes;
    Ok(parsed)
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&byte| byte == needle)
}

fn decompress_blocks(
    file: std::fs::File,
    path: PathBuf,
    sender: mpsc::SyncSender<Vec<u8>>,
    on_bytes: impl Fn(u64),
) -> Result<()> {
    let counting = CountingReader { inner: BufReader::with_capacity(1 << 20, file), consumed: 0 };
    let mut decoder = MultiBzDecoder::new(counting);
    loop {
        let mut block = vec![0u8; BLOCK_BYTES];
        let mut filled = 0;
        while filled < BLOCK_BYTES {
            match decoder.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    let at = decoder.get_ref().consumed;
                    let message = format!("the bzip2 data is truncated or corrupt near compressed byte {at}: {error}");
                    return Err(LakeError::Corrupt { path, message });
                }
            }
        }
        on_bytes(decoder.get_ref().consumed);
        if filled == 0 {
            return Ok(());
        }
        block.truncate(filled);
        if sender.send(block).is_err() {
            return Ok(());
        }
    }
}

struct CountingReader<R> {
    inner: R,
    consumed: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.consumed += read as u64;
        Ok(read)
    }
}

/// The bytes that open a bzip2 stream whose first block follows: "BZh",
/// the level digit, then the block magic (BCD pi). Streams are byte-aligned
/// in a multi-stream file; inside compressed data this 10-byte sequence
/// turns up with odds of about 2^-80 per byte, and a wrong split would only
/// fail loudly (a decode error), never lose data silently.
fn is_stream_start(window: &[u8]) -> bool {
    window.len() >= 10
        && &window[..3] == b"BZh"
        && (b'1'..=b'9').contains(&window[3])
        && window[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]
}

/// Least compressed bytes in one parallel segment (several streams).
const SEGMENT_BYTES: u64 = 4 << 20;

/// Splits the file into segments of whole streams, each at least
/// `segment_bytes` (the last may be smaller). One segment means: decode
/// sequentially.
fn split_streams(path: &Path, segment_bytes: u64) -> Result<Vec<(u64, u64)>> {
    let mut file = std::fs::File::open(path).map_err(LakeError::io("opening", path))?;
    let length = file.metadata().map_err(LakeError::io("reading", path))?.len();
    let mut starts = Vec::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut carried = 0usize;
    let mut offset = 0u64; // file offset of buffer[0]
    loop {
        let read = file.read(&mut buffer[carried..]).map_err(LakeError::io("reading", path))?;
        let filled = carried + read;
        let scan_end = if read == 0 { filled } else { filled.saturating_sub(9) };
        for index in 0..scan_end {
            if buffer[index] == b'B' && is_stream_start(&buffer[index..filled]) {
                starts.push(offset + index as u64);
            }
        }
        if read == 0 {
            break;
        }
        buffer.copy_within(scan_end..filled, 0);
        carried = filled - scan_end;
        offset += scan_end as u64;
    }
    if starts.first() != Some(&0) {
        return Ok(vec![(0, length)]);
    }
    let mut segments: Vec<(u64, u64)> = Vec::new();
    for &start in &starts {
        match segments.last_mut() {
            Some((first, _)) if start - *first < segment_bytes => {}
            _ => segments.push((start, 0)),
        }
    }
    let ends: Vec<u64> = segments.iter().skip(1).map(|&(start, _)| start).chain([length]).collect();
    for (segment, end) in segments.iter_mut().zip(ends) {
        segment.1 = end - segment.0;
    }
    Ok(segments)
}

fn decompress_segment(path: &Path, (start, length): (u64, u64)) -> Result<Vec<u8>> {
    use std::io::Seek;
    let mut file = std::fs::File::open(path).map_err(LakeError::io("opening", path))?;
    file.seek(std::io::SeekFrom::Start(start)).map_err(LakeError::io("seeking in", path))?;
    let mut decoder = MultiBzDecoder::new(BufReader::with_capacity(1 << 20, file.take(length)));
    let mut output = Vec::with_capacity(length as usize * 5);
    decoder.read_to_end(&mut output).map_err(|error| LakeError::Corrupt {
        path: path.to_path_buf(),
        message: format!("the bzip2 data is truncated or corrupt in bytes {start}..{}: {error}", start + length),
    })?;
    Ok(output)
}

/// Decodes segments on two threads and hands them on in file order. At most
/// a few segments (tens of MB) are held at once: workers block on a bounded
/// channel, and out-of-order results wait in a small reorder buffer.
fn decompress_parallel(
    path: &Path,
    segments: &[(u64, u64)],
    sender: mpsc::SyncSender<Vec<u8>>,
    on_bytes: impl Fn(u64),
) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const WORKERS: usize = 2;
    let next = AtomicUsize::new(0);
    let (results, received) = mpsc::sync_channel::<(usize, Result<Vec<u8>>)>(WORKERS);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            let results = results.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&segment) = segments.get(index) else { return };
                    if results.send((index, decompress_segment(path, segment))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(results);
        let mut pending = BTreeMap::new();
        let mut emitted = 0usize;
        let mut consumed = 0u64;
        for (index, decoded) in received.iter() {
            pending.insert(index, decoded?);
            while let Some(block) = pending.remove(&emitted) {
                consumed += segments[emitted].1;
                emitted += 1;
                on_bytes(consumed);
                if sender.send(block).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn compressed(text: &str) -> Vec<u8> {
        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    fn lines(from: usize, to: usize) -> String {
        (from..to).map(|n| format!("line {n} {}\n", "x".repeat(n % 50))).collect()
    }

    #[test]
    fn multi_stream_files_split_on_stream_starts_and_decode_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("multi.bz2");
        let parts: Vec<String> = (0..6).map(|part| lines(part * 40_000, (part + 1) * 40_000)).collect();
        let bytes: Vec<u8> = parts.iter().flat_map(|part| compressed(part)).collect();
        std::fs::write(&path, &bytes).unwrap();

        let segments = split_streams(&path, 1).unwrap();
        assert_eq!(segments.len(), 6, "{segments:?}");
        assert_eq!(segments.iter().map(|&(_, length)| length).sum::<u64>(), bytes.len() as u64);
        let (sender, receiver) = mpsc::sync_channel(1);
        let reader = std::thread::spawn(move || receiver.iter().flatten().collect::<Vec<u8>>());
        decompress_parallel(&path, &segments, sender, |_| {}).unwrap();
        assert_eq!(String::from_utf8(reader.join().unwrap()).unwrap(), parts.concat());
    }

    /// Line `n` of a mixed file: valid starts over ten days, with a
    /// rejected line every 7th and a CRLF ending every 5th.
    fn mixed_line(n: usize) -> String {
        let ending = if n.is_multiple_of(5) { "\r\n" } else { "\n" };
        if n.is_multiple_of(7) {
            return format!("not json {n}{ending}");
        }
        format!(
            "{{\"event\":\"start\",\"ts\":\"2016-11-{:02}T10:00:00.{n:06}\",\"session_id\":\"00000001-0000-4000-8000-{n:012}\",\"player_id\":\"{n:032}\",\"country\":\"FI\"}}{ending}",
            1 + n % 10
        )
    }

    fn mixed_file(dir: &Path, lines: usize) -> PathBuf {
        let path = dir.join("mixed.bz2");
        std::fs::write(&path, compressed(&(1..=lines).map(mixed_line).collect::<String>())).unwrap();
        path
    }

    fn all_chunks(path: &Path, skip: u64, limits: ChunkLimits) -> (Vec<Chunk>, ReadSummary) {
        let mut chunks = Vec::new();
        let summary = read_chunks(
            path,
            skip,
            limits,
            |_| {},
            |chunk| {
                chunks.push(chunk);
                true
            },
        )
        .unwrap();
        (chunks, summary)
    }

    /// (line number, event or rejection) of every line the chunks hold.
    fn contents(chunks: &[Chunk]) -> (Vec<Event>, Vec<u64>) {
        let mut events: Vec<Event> = chunks.iter().flat_map(|chunk| chunk.days.values().flatten().copied()).collect();
        events.sort_by_key(|event| (event.ts_micros, event.session_id));
        (events, chunks.iter().flat_map(|chunk| chunk.rejected.iter().map(|line| line.line_number)).collect())
    }

    #[test]
    fn chunks_cover_every_line_once_within_their_limits_whatever_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = mixed_file(dir.path(), 5_000);
        let whole = all_chunks(&path, 0, ChunkLimits { max_lines: u64::MAX, max_bytes: u64::MAX });
        assert_eq!(whole.0.len(), 1);
        assert_eq!(whole.1.lines, 5_000);
        let (want_events, want_rejected) = contents(&whole.0);
        assert_eq!(want_rejected.len(), 5_000 / 7);
        assert_eq!(want_events.len(), 5_000 - 5_000 / 7);

        let longest = (1..=5_000).map(|n| mixed_line(n).len() as u64).max().unwrap();
        for limits in [
            ChunkLimits { max_lines: 700, max_bytes: u64::MAX },
            ChunkLimits { max_lines: 1, max_bytes: u64::MAX },
            ChunkLimits { max_lines: u64::MAX, max_bytes: 10_000 },
            ChunkLimits { max_lines: 5_000, max_bytes: u64::MAX },
        ] {
            let (chunks, summary) = all_chunks(&path, 0, limits);
            assert_eq!(summary, whole.1, "{limits:?}");
            let mut next = 1;
            for (index, chunk) in chunks.iter().enumerate() {
                assert_eq!(chunk.first_line, next, "{limits:?}: chunks follow each other");
                assert!(chunk.lines() <= limits.max_lines, "{limits:?}: {} lines", chunk.lines());
                assert!(
                    chunk.bytes < limits.max_bytes.saturating_add(longest + 2),
                    "{limits:?}: {} bytes",
                    chunk.bytes
                );
                assert_eq!(chunk.is_last, index == chunks.len() - 1);
                next = chunk.last_line + 1;
            }
            assert_eq!(next, 5_001, "{limits:?}");
            assert_eq!(contents(&chunks), (want_events.clone(), want_rejected.clone()), "{limits:?}");
        }
        // Exactly full chunks: the last one is empty and says so.
        let (chunks, _) = all_chunks(&path, 0, ChunkLimits { max_lines: 1_000, max_bytes: u64::MAX });
        assert_eq!(chunks.len(), 6);
        assert_eq!((chunks[5].first_line, chunks[5].lines(), chunks[5].is_last), (5_001, 0, true));
    }

    #[test]
    fn a_resumed_read_starts_after_the_skipped_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = mixed_file(dir.path(), 3_000);
        let limits = ChunkLimits { max_lines: 1_000, max_bytes: u64::MAX };
        let (whole, _) = all_chunks(&path, 0, limits);
        let (resumed, summary) = all_chunks(&path, 1_234, limits);
        assert_eq!(summary.lines, 3_000, "skipped lines are still counted");
        assert_eq!(resumed[0].first_line, 1_235);
        assert_eq!(resumed.iter().map(Chunk::lines).sum::<u64>(), 3_000 - 1_234);
        let (events, rejected) = contents(&whole);
        let (resumed_events, resumed_rejected) = contents(&resumed);
        assert_eq!(resumed_rejected, rejected.into_iter().filter(|&line| line > 1_234).collect::<Vec<_>>());
        // Line n's event has n microseconds past the second.
        let later: Vec<Event> = events.into_iter().filter(|event| event.ts_micros % 1_000_000 > 1_234).collect();
        assert_eq!(later.len(), (1_235..=3_000).filter(|n: &u64| !n.is_multiple_of(7)).count());
        assert_eq!(resumed_events, later);
    }

    #[test]
    fn a_line_without_end_is_buffered_only_up_to_the_limit() {
        let mut splitter = LineSplitter::default();
        let block = vec![b'x'; 1 << 20];
        let mut lines = Vec::new();
        for _ in 0..64 {
            splitter.push(&block, |kept, length| lines.push((kept.len(), length)));
        }
        splitter.push(b"x\nshort\n", |kept, length| lines.push((kept.len(), length)));
        splitter.push(&block, |kept, length| lines.push((kept.len(), length)));
        splitter.finish(|kept, length| lines.push((kept.len(), length)));
        assert_eq!(lines, [(MAX_LINE_BYTES + 1, (64 << 20) + 1), (5, 5), (MAX_LINE_BYTES, MAX_LINE_BYTES as u64)]);
        assert_eq!(splitter.most_buffered(), MAX_LINE_BYTES + 1);
    }

    #[test]
    fn a_too_long_line_keeps_its_first_mebibyte_and_says_how_long_it_was() {
        let mut chunk = Chunk::starting_at(1);
        chunk.accept_line(&vec![b'x'; MAX_LINE_BYTES + 1], 5 << 20);
        chunk.accept_line(&vec![b'y'; MAX_LINE_BYTES + 1], MAX_LINE_BYTES as u64 + 1);
        let kept: Vec<(usize, RejectReason)> =
            chunk.rejected.iter().map(|line| (line.bytes.len(), line.rejection.reason)).collect();
        assert_eq!(kept, [(MAX_LINE_BYTES, RejectReason::LineTooLong); 2]);
        assert!(chunk.rejected[0].rejection.message.starts_with("line has 5242880 bytes"), "{:?}", chunk.rejected[0]);
        assert_eq!(chunk.bytes, (5 << 20) + 1 + MAX_LINE_BYTES as u64 + 2);
    }

    #[test]
    fn single_stream_files_stay_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("single.bz2");
        std::fs::write(&path, compressed(&lines(0, 200_000))).unwrap();
        assert_eq!(split_streams(&path, 1).unwrap().len(), 1);
    }
}
