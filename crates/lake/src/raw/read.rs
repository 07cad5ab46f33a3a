//! Reading a landed file: bzip2 decompressed on one thread (on two, in
//! order, for a multi-stream file such as pbzip2 or our generator write),
//! lines parsed on another, events bucketed by event date in their compact
//! form. The file is never held in memory as a whole; what is kept is ~48
//! bytes per valid event plus the rejected lines.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bzip2::read::MultiBzDecoder;
use sessionlake_model::{Event, RejectReason, Rejection, parse_line};

use crate::error::{LakeError, Result};

/// A line that failed validation.
#[derive(Debug, Clone)]
pub struct RejectedLine {
    /// 1-based line number in the decompressed file.
    pub line_number: u64,
    /// The exact bytes (terminator stripped).
    pub bytes: Vec<u8>,
    /// Why.
    pub rejection: Rejection,
}

/// Everything read from one file.
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

impl ParsedFile {
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
}

const BLOCK_BYTES: usize = 4 << 20;

/// Decompresses and parses `path`. `on_bytes` is called with the number of
/// compressed bytes consumed so far (for a progress bar).
pub fn read_landed_file(path: &Path, on_bytes: impl Fn(u64) + Send + 'static) -> Result<ParsedFile> {
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

    let mut parsed = ParsedFile::default();
    let mut carry: Vec<u8> = Vec::new();
    for block in receiver {
        parsed.bytes += block.len() as u64;
        let mut rest: &[u8] = &block;
        if !carry.is_empty() {
            // A line longer than a block spans blocks; join its pieces.
            match memchr(b'\n', rest) {
                Some(end) => {
                    carry.extend_from_slice(&rest[..end]);
                    let line = std::mem::take(&mut carry);
                    accept_line(&mut parsed, &line);
                    rest = &rest[end + 1..];
                }
                None => {
                    carry.extend_from_slice(rest);
                    continue;
                }
            }
        }
        while let Some(end) = memchr(b'\n', rest) {
            accept_line(&mut parsed, &rest[..end]);
            rest = &rest[end + 1..];
        }
        carry.extend_from_slice(rest);
    }
    // Decompression errors surface here, after the channel closed.
    decompressor
        .join()
        .map_err(|_| LakeError::Corrupt { path: path.to_path_buf(), message: "decompressor panicked".into() })??;
    if !carry.is_empty() {
        accept_line(&mut parsed, &carry);
    }
    Ok(parsed)
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&byte| byte == needle)
}

fn accept_line(parsed: &mut ParsedFile, raw: &[u8]) {
    parsed.lines += 1;
    let mut line = raw.strip_suffix(b"\r").unwrap_or(raw);
    if parsed.lines == 1 {
        line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    }
    match parse_line(line) {
        Ok(event) => parsed.days.entry(event.event_day()).or_default().push(event),
        Err(rejection) => {
            parsed.rejected.push(RejectedLine { line_number: parsed.lines, bytes: raw.to_vec(), rejection })
        }
    }
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

    #[test]
    fn single_stream_files_stay_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("single.bz2");
        std::fs::write(&path, compressed(&lines(0, 200_000))).unwrap();
        assert_eq!(split_streams(&path, 1).unwrap().len(), 1);
    }
}
