//! Reading a landed file: bzip2 (single- or multi-stream) decompressed on
//! one thread, lines parsed on another, events bucketed by event date in
//! their compact form. The file is never held in memory as a whole; what is
//! kept is ~56 bytes per valid event plus the rejected lines.

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
    let decompressor = std::thread::Builder::new()
        .name("decompress".into())
        .spawn(move || decompress_blocks(file, owned_path, sender, on_bytes))
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
