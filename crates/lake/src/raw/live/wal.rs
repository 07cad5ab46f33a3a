//! The write-ahead log of live ingest: posted events are appended here and
//! synced to disk before the request is acknowledged; the committer folds
//! them into the raw table later, in bigger commits.
//!
//! ```text
//!  <wal dir>/LOCK                       held (flock) by the one process using this log
//!  <wal dir>/replica                    this log's id: its commits carry `live-wal-<id>`
//!  <wal dir>/00000000000000000001.wal   segments, named by the first sequence they may hold
//!  <wal dir>/00000000000000052417.wal
//! ```
//!
//! A segment is a run of records, each one request's events:
//!
//! ```text
//!  len: u32 LE | xxhash64(seq ‖ payload): u64 LE | seq: u64 LE | payload: len bytes = events × 44 bytes
//!  event: kind u8 | ts_micros i64 LE | session_id u128 LE | player_id u128 LE | has_country u8 | country [u8; 2]
//! ```
//!
//! Sequences grow by one per record, across segments and restarts. A crash
//! can leave the last record of the last segment torn: opening the log cuts
//! it off (it was never acknowledged). A bad record anywhere else is damage,
//! and opening fails rather than skip data. A segment is deleted once the
//! raw table holds every record in it.
//!
//! Segments are filled with zeros [`ALLOCATE_STEP`] bytes ahead of the
//! records, and records are written over those zeros. An append then
//! changes no file size, so its `fdatasync` writes the record's pages and
//! nothing else; an append that grows the file also commits the file
//! system's journal, which waits for every other process's data written
//! since the last commit (ext4's ordered mode). A run of zeros after the
//! last record is the end of a segment (a record never starts with zeros:
//! its sequence is at least 1).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sessionlake_model::{Event, EventKind};
use tracing::warn;
use twox_hash::XxHash64;

use crate::error::{LakeError, Result};

/// Bytes of one encoded event.
const EVENT_BYTES: usize = 44;
/// Bytes of a record's header: length, hash, sequence.
const HEADER_BYTES: usize = 20;
/// The file extension of segments.
const SEGMENT_EXTENSION: &str = "wal";
/// How far ahead of its records a segment is filled with zeros: one append
/// in this many bytes grows the file.
const ALLOCATE_STEP: u64 = 4 << 20;

/// One request's events, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// The record's position in the log, from 1.
    pub(super) seq: u64,
    /// The events, in the request's order.
    pub(super) events: Vec<Event>,
}

/// An open write-ahead log, locked for this process.
pub(super) struct Wal {
    dir: PathBuf,
    /// Held for the log's life: a second process (or a second `open` in this
    /// one) on the same folder fails at once instead of interleaving writes.
    _lock: File,
    replica: String,
    /// Every segment, oldest first; the last one is appended to.
    segments: Vec<Segment>,
    current: File,
    /// Where the current segment's records end: the next one goes here.
    current_bytes: u64,
    /// The current segment's length: zeros from `current_bytes` on.
    allocated: u64,
    next_seq: u64,
    max_segment_bytes: u64,
    /// Reused for every append.
    scratch: Vec<u8>,
}

struct Segment {
    path: PathBuf,
    /// The last record's sequence; `None` while it holds none.
    last_seq: Option<u64>,
}

/// What [`Wal::open`] found.
pub(super) struct Opened {
    pub(super) wal: Wal,
    /// Every intact record still in the log, oldest first.
    pub(super) records: Vec<Record>,
}

impl Wal {
    /// Opens the log in `dir` (creating it), locks it, reads every record
    /// and cuts off a torn last record. Segments grow to about
    /// `max_segment_bytes` before the next one is started.
    pub(super) fn open(dir: &Path, max_segment_bytes: u64) -> Result<Opened> {
        std::fs::create_dir_all(dir).map_err(LakeError::io("creating", dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(LakeError::io("opening", &lock_path))?;
        if let Err(error) = lock.try_lock() {
            return Err(wal_error(format!(
                "the write-ahead log {} is in use by another process ({error}); give each API process its own \
                 --wal-dir",
                dir.display()
            )));
        }
        let replica = read_or_create_replica(dir)?;
        let mut paths = segment_paths(dir)?;
        let mut segments = Vec::with_capacity(paths.len() + 1);
        let mut records = Vec::new();
        let last = paths.len().checked_sub(1);
        let mut last_intact = 0;
        for (index, path) in paths.drain(..).enumerate() {
            let (found, intact_bytes, torn) = read_segment(&path)?;
            if let Some(why) = torn {
                if Some(index) != last {
                    return Err(wal_error(format!(
                        "segment {} is damaged before its end ({why}); it is not the segment being written, so \
                         this is not a torn write. Refusing to skip its records",
                        path.display()
                    )));
                }
                warn!(segment = %path.display(), at = intact_bytes, %why, "cutting off a torn record at the end of the write-ahead log (never acknowledged)");
                let file = OpenOptions::new().write(true).open(&path).map_err(LakeError::io("opening", &path))?;
                file.set_len(intact_bytes)
                    .and_then(|()| file.sync_all())
                    .map_err(LakeError::io("truncating", &path))?;
            }
            if let (Some(previous), Some(first)) = (records.last().map(|r: &Record| r.seq), found.first())
                && first.seq <= previous
            {
                return Err(wal_error(format!(
                    "segment {} starts at sequence {} after sequence {previous}: the log is out of order",
                    path.display(),
                    first.seq
                )));
            }
            segments.push(Segment { path, last_seq: found.last().map(|record| record.seq) });
            records.extend(found);
            last_intact = intact_bytes;
        }
        let next_seq = records.last().map_or(1, |record| record.seq + 1);
        let (current, current_bytes, allocated) = match segments.last() {
            Some(segment) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&segment.path)
                    .map_err(LakeError::io("opening", &segment.path))?;
                let length = file.metadata().map_err(LakeError::io("reading", &segment.path))?.len();
                (file, last_intact, length)
            }
            None => {
                let (segment, file) = create_segment(dir, next_seq)?;
                segments.push(segment);
                (file, 0, 0)
            }
        };
        let wal = Wal {
            dir: dir.to_path_buf(),
            _lock: lock,
            replica,
            segments,
            current,
            current_bytes,
            allocated,
            next_seq,
            max_segment_bytes: max_segment_bytes.max(1),
            scratch: Vec::new(),
        };
        Ok(Opened { wal, records })
    }

    /// This log's id, stable across restarts: the raw table's commits of
    /// its records carry the app id [`Wal::app_id`].
    pub(super) fn replica(&self) -> &str {
        &self.replica
    }

    /// The Delta application-transaction id under which the folded
    /// sequence of this log is recorded in the raw table.
    pub(super) fn app_id(&self) -> String {
        app_id(&self.replica)
    }

    /// Makes the next sequence larger than `seq` (the raw table already
    /// holds every record up to it: a sequence is never reused). A jump
    /// starts a new segment: within one, sequences follow each other.
    pub(super) fn continue_after(&mut self, seq: u64) -> Result<()> {
        if seq < self.next_seq {
            return Ok(());
        }
        self.next_seq = seq + 1;
        if self.current_bytes > 0 { self.rotate() } else { Ok(()) }
    }

    /// Appends one record per request and syncs the file: once this
    /// returns, the records survive a crash of the process or the machine.
    /// Returns the sequence of each. On an error nothing of the batch is
    /// kept (the file is cut back to where it was).
    pub(super) fn append<'a>(&mut self, requests: impl IntoIterator<Item = &'a [Event]>) -> Result<Vec<u64>> {
        if self.current_bytes >= self.max_segment_bytes {
            self.rotate()?;
        }
        self.scratch.clear();
        let mut seqs = Vec::new();
        for events in requests {
            let seq = self.next_seq + seqs.len() as u64;
            encode_record(&mut self.scratch, seq, events);
            seqs.push(seq);
        }
        if seqs.is_empty() {
            return Ok(seqs);
        }
        let end = self.current_bytes + self.scratch.len() as u64;
        let written = self
            .current
            .write_all_at(&self.scratch, self.current_bytes)
            .and_then(|()| self.allocate_through(end))
            .and_then(|()| self.current.sync_data());
        if let Err(error) = written {
            // Cut off whatever part reached the file; if even that fails,
            // the torn tail is cut when the log is next opened.
            let _ = self.current.set_len(self.current_bytes);
            self.allocated = self.current_bytes;
            let path = &self.segments.last().expect("a current segment").path;
            return Err(LakeError::io("appending to", path)(error));
        }
        self.current_bytes = end;
        self.next_seq += seqs.len() as u64;
        self.segments.last_mut().expect("a current segment").last_seq = seqs.last().copied();
        Ok(seqs)
    }

    /// Deletes every segment but the current one whose records all have a
    /// sequence up to `folded` (the raw table holds them).
    pub(super) fn release_through(&mut self, folded: u64) -> Result<()> {
        let current = self.segments.len() - 1;
        let mut released = 0;
        while released < current && self.segments[released].last_seq.is_none_or(|last| last <= folded) {
            let path = &self.segments[released].path;
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::NotFound => {}
                Err(error) => return Err(LakeError::io("deleting", path)(error)),
            }
            released += 1;
        }
        if released > 0 {
            self.segments.drain(..released);
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// How many segment files the log has.
    #[cfg(test)]
    fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn rotate(&mut self) -> Result<()> {
        let (segment, file) = create_segment(&self.dir, self.next_seq)?;
        self.segments.push(segment);
        self.current = file;
        self.current_bytes = 0;
        self.allocated = 0;
        Ok(())
    }

    /// Once records reach `end`, fills the segment with zeros up to
    /// [`ALLOCATE_STEP`] past it (at most to the segment size), so that the
    /// next appends write within the file. Not synced here: the append's
    /// sync covers it.
    fn allocate_through(&mut self, end: u64) -> std::io::Result<()> {
        self.allocated = self.allocated.max(end);
        let target = (end + ALLOCATE_STEP).min(self.max_segment_bytes);
        if self.allocated >= end + ALLOCATE_STEP / 2 || target <= self.allocated {
            return Ok(());
        }
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        while self.allocated < target {
            let length = (target - self.allocated).min(ZEROS.len() as u64) as usize;
            self.current.write_all_at(&ZEROS[..length], self.allocated)?;
            self.allocated += length as u64;
        }
        Ok(())
    }
}

/// The app id of a replica's log (see [`Wal::app_id`]).
pub(super) fn app_id(replica: &str) -> String {
    format!("live-wal-{replica}")
}

fn read_or_create_replica(dir: &Path) -> Result<String> {
    let path = dir.join("replica");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let replica = text.trim();
            if replica.is_empty() || !replica.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-') {
                return Err(wal_error(format!("{} does not hold a replica id: {text:?}", path.display())));
            }
            Ok(replica.to_string())
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes)
                .map_err(|error| wal_error(format!("no random bytes for a replica id: {error}")))?;
            let replica = hex::encode(bytes);
            let temporary = dir.join("replica.tmp");
            let mut file = File::create(&temporary).map_err(LakeError::io("creating", &temporary))?;
            file.write_all(replica.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(LakeError::io("writing", &temporary))?;
            std::fs::rename(&temporary, &path).map_err(LakeError::io("renaming", &temporary))?;
            sync_dir(dir)?;
            Ok(replica)
        }
        Err(error) => Err(LakeError::io("reading", &path)(error)),
    }
}

/// The segments in `dir`, oldest first (names sort as numbers).
fn segment_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(LakeError::io("listing", dir))? {
        let path = entry.map_err(LakeError::io("listing", dir))?.path();
        let is_segment = path.extension().is_some_and(|extension| extension == SEGMENT_EXTENSION)
            && path.file_stem().and_then(|stem| stem.to_str()).is_some_and(|stem| stem.parse::<u64>().is_ok());
        if is_segment {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<(Segment, File)> {
    let path = dir.join(format!("{first_seq:020}.{SEGMENT_EXTENSION}"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(LakeError::io("creating", &path))?;
    // The new name must be durable before records in it are acknowledged.
    sync_dir(dir)?;
    Ok((Segment { path, last_seq: None }, file))
}

/// Reads a segment: its intact records, how many bytes they take, and why
/// the rest (if any) is unusable.
fn read_segment(path: &Path) -> Result<(Vec<Record>, u64, Option<String>)> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut file| file.read_to_end(&mut bytes)).map_err(LakeError::io("reading", path))?;
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match decode_record(&bytes[at..]) {
            Ok((record, used)) => {
                if let Some(previous) = records.last().map(|r: &Record| r.seq)
                    && record.seq != previous + 1
                {
                    return Ok((records, at as u64, Some(format!("sequence {} follows {previous}", record.seq))));
                }
                records.push(record);
                at += used;
            }
            // The zeros ahead of the records: the segment's clean end.
            Err(_) if bytes[at..].iter().all(|&byte| byte == 0) => break,
            Err(why) => return Ok((records, at as u64, Some(why))),
        }
    }
    Ok((records, at as u64, None))
}

fn encode_record(out: &mut Vec<u8>, seq: u64, events: &[Event]) {
    let start = out.len();
    out.extend_from_slice(&((events.len() * EVENT_BYTES) as u32).to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    for event in events {
        out.push(match event.kind {
            EventKind::Start => 0,
            EventKind::End => 1,
        });
        out.extend_from_slice(&event.ts_micros.to_le_bytes());
        out.extend_from_slice(&event.session_id.to_le_bytes());
        out.extend_from_slice(&event.player_id.to_le_bytes());
        let (has, country) = event.country.map_or((0, [0; 2]), |country| (1, country));
        out.push(has);
        out.extend_from_slice(&country);
    }
    let hash = XxHash64::oneshot(0, &out[start + 12..]);
    out[start + 4..start + 12].copy_from_slice(&hash.to_le_bytes());
}

/// One record from the front of `bytes` and its length, or why there is
/// none (too short, a wrong hash, a bad event).
fn decode_record(bytes: &[u8]) -> std::result::Result<(Record, usize), String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!("{} bytes, shorter than a record header", bytes.len()));
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let hash = u64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes"));
    if !len.is_multiple_of(EVENT_BYTES) {
        return Err(format!("a record length of {len} bytes is not a whole number of events"));
    }
    let Some(body) = bytes.get(12..HEADER_BYTES + len) else {
        return Err(format!("a record of {len} bytes, of which only {} were written", bytes.len() - HEADER_BYTES));
    };
    if XxHash64::oneshot(0, body) != hash {
        return Err("a record whose hash does not match its content".into());
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
    let events = body[8..].chunks_exact(EVENT_BYTES).map(decode_event).collect::<std::result::Result<_, _>>()?;
    Ok((Record { seq, events }, HEADER_BYTES + len))
}

fn decode_event(bytes: &[u8]) -> std::result::Result<Event, String> {
    let kind = match bytes[0] {
        0 => EventKind::Start,
        1 => EventKind::End,
        other => return Err(format!("an event of kind {other}")),
    };
    let country = match bytes[41] {
        0 => None,
        1 => Some([bytes[42], bytes[43]]),
        other => return Err(format!("a country flag of {other}")),
    };
    Ok(Event {
        kind,
        ts_micros: i64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes")),
        session_id: u128::from_le_bytes(bytes[9..25].try_into().expect("16 bytes")),
        player_id: u128::from_le_bytes(bytes[25..41].try_into().expect("16 bytes")),
        country,
    })
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|folder| folder.sync_all()).map_err(LakeError::io("syncing", dir))
}

fn wal_error(message: String) -> LakeError {
    LakeError::Unexpected { table: crate::schema::RAW.name, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u128, kind: EventKind) -> Event {
        Event {
            kind,
            ts_micros: 1_478_476_800_000_000 + n as i64,
            session_id: n << 64 | 7,
            player_id: u128::MAX - n,
            country: (kind == EventKind::Start).then_some(*b"FI"),
        }
    }

    fn requests(count: u128) -> Vec<Vec<Event>> {
        (0..count).map(|n| vec![event(n, EventKind::Start), event(n, EventKind::End)]).collect()
    }

    #[test]
    fn records_come_back_as_written_across_segments_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let written = requests(50);
        let mut opened = Wal::open(dir.path(), 500).unwrap();
        assert!(opened.records.is_empty());
        let replica = opened.wal.replica().to_string();
        let mut seqs = Vec::new();
        for chunk in written.chunks(7) {
            seqs.extend(opened.wal.append(chunk.iter().map(Vec::as_slice)).unwrap());
        }
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        assert!(opened.wal.segment_count() > 3, "small segments rotate");
        drop(opened);
        let reopened = Wal::open(dir.path(), 500).unwrap();
        assert_eq!(reopened.wal.replica(), replica, "the replica id is kept");
        let read: Vec<_> = reopened.records.iter().map(|record| record.events.clone()).collect();
        assert_eq!(read, written);
        assert_eq!(reopened.records.iter().map(|record| record.seq).collect::<Vec<_>>(), seqs);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut opened = Wal::open(dir.path(), 1 << 20).unwrap();
        opened.wal.append(requests(3).iter().map(Vec::as_slice)).unwrap();
        let segment = segment_paths(dir.path()).unwrap().pop().unwrap();
        drop(opened);
        // A crash in the middle of the fourth record's write, over the
        // zeros ahead of the records.
        let mut bytes = std::fs::read(&segment).unwrap();
        let intact = 3 * (HEADER_BYTES + 2 * EVENT_BYTES);
        assert!(bytes[intact..].iter().all(|&byte| byte == 0) && bytes.len() > intact);
        let mut torn = Vec::new();
        encode_record(&mut torn, 4, &requests(1)[0]);
        bytes[intact..intact + torn.len() - 5].copy_from_slice(&torn[..torn.len() - 5]);
        std::fs::write(&segment, &bytes).unwrap();

        let mut reopened = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(reopened.records.len(), 3);
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), intact as u64, "the torn bytes are gone");
        assert_eq!(reopened.wal.append([requests(1)[0].as_slice()]).unwrap(), vec![4]);
        drop(reopened);
        assert_eq!(Wal::open(dir.path(), 1 << 20).unwrap().records.len(), 4);
    }

    #[test]
    fn records_are_written_over_zeros_ahead_of_them_in_every_segment() {
        let dir = tempfile::tempdir().unwrap();
        let record_bytes = (HEADER_BYTES + 2 * EVENT_BYTES) as u64;
        let mut opened = Wal::open(dir.path(), 1 << 20).unwrap();
        opened.wal.append(requests(3).iter().map(Vec::as_slice)).unwrap();
        let first = segment_paths(dir.path()).unwrap().pop().unwrap();
        assert_eq!(std::fs::metadata(&first).unwrap().len(), 1 << 20, "zeros up to the segment size");
        // A jump in sequence leaves the first segment with zeros at its end.
        opened.wal.continue_after(10).unwrap();
        opened.wal.append([requests(1)[0].as_slice()]).unwrap();
        drop(opened);

        let mut reopened = Wal::open(dir.path(), 1 << 20).unwrap();
        let seqs = |records: &[Record]| records.iter().map(|record| record.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&reopened.records), vec![1, 2, 3, 11]);
        assert_eq!(reopened.wal.current_bytes, record_bytes, "the next record goes right after the last one");
        assert_eq!(reopened.wal.append([requests(1)[0].as_slice()]).unwrap(), vec![12]);
        drop(reopened);
        assert_eq!(seqs(&Wal::open(dir.path(), 1 << 20).unwrap().records), vec![1, 2, 3, 11, 12]);
        let last = segment_paths(dir.path()).unwrap().pop().unwrap();
        assert_eq!(std::fs::metadata(&last).unwrap().len(), 1 << 20, "appends within the zeros grow nothing");
    }

    #[test]
    fn damage_before_the_last_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut opened = Wal::open(dir.path(), 100).unwrap();
        for request in requests(4) {
            opened.wal.append([request.as_slice()]).unwrap();
        }
        drop(opened);
        let first = segment_paths(dir.path()).unwrap().remove(0);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[30] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let error = Wal::open(dir.path(), 100).err().expect("damage is an error");
        assert!(error.to_string().contains("damaged"), "{error}");
    }

    #[test]
    fn a_second_open_of_the_same_folder_fails_while_the_first_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = Wal::open(dir.path(), 1 << 20).unwrap();
        let error = Wal::open(dir.path(), 1 << 20).err().expect("locked");
        assert!(error.to_string().contains("in use by another process"), "{error}");
        drop(first);
        Wal::open(dir.path(), 1 << 20).unwrap();
    }

    #[test]
    fn released_segments_are_deleted_and_sequences_continue_after_the_lake() {
        let dir = tempfile::tempdir().unwrap();
        let mut opened = Wal::open(dir.path(), 100).unwrap();
        for request in requests(6) {
            opened.wal.append([request.as_slice()]).unwrap();
        }
        let before = opened.wal.segment_count();
        opened.wal.release_through(4).unwrap();
        assert!(opened.wal.segment_count() < before);
        drop(opened);
        let mut reopened = Wal::open(dir.path(), 100).unwrap();
        let left: Vec<u64> = reopened.records.iter().map(|record| record.seq).collect();
        assert_eq!(left, vec![5, 6], "one record per segment: those up to 4 are gone");
        reopened.wal.continue_after(10).unwrap();
        assert_eq!(reopened.wal.append([requests(1)[0].as_slice()]).unwrap(), vec![11]);
    }
}
