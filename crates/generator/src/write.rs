//! Formatting the plan and compressing it as a multi-stream bzip2 file:
//! the text is cut into chunks of whole lines (cut points depend only on
//! the content), each chunk is compressed on one of two threads as its own
//! bzip2 stream, and the streams are written in order (like `pbzip2`).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;

use bzip2::Compression;
use bzip2::write::BzEncoder;

use crate::format::push_valid_line;
use crate::plan::{Line, Plan};

/// A chunk is closed after the line that makes it reach this many bytes.
pub(crate) const CHUNK_TEXT_BYTES: usize = 4 << 20;

const WORKERS: usize = 2;

fn compress(text: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = BzEncoder::new(Vec::with_capacity(text.len() / 5 + 1024), Compression::best());
    encoder.write_all(text)?;
    encoder.finish()
}

/// Writes the plan's lines, bzip2-compressed, to `out`.
pub(crate) fn write_compressed<W: Write>(plan: &Plan, out: &mut W) -> io::Result<()> {
    std::thread::scope(|scope| {
        let mut jobs = Vec::with_capacity(WORKERS);
        let mut results = Vec::with_capacity(WORKERS);
        for _ in 0..WORKERS {
            let (job_tx, job_rx) = mpsc::sync_channel::<Vec<u8>>(1);
            let (result_tx, result_rx) = mpsc::channel::<io::Result<Vec<u8>>>();
            scope.spawn(move || {
                for text in job_rx {
                    if result_tx.send(compress(&text)).is_err() {
                        break;
                    }
                }
            });
            jobs.push(job_tx);
            results.push(result_rx);
        }

        // Which worker holds each chunk not yet written, oldest first.
        let mut pending: VecDeque<usize> = VecDeque::new();
        let mut chunks = 0usize;
        let write_oldest = |pending: &mut VecDeque<usize>, out: &mut W| -> io::Result<()> {
            let worker = pending.pop_front().expect("a pending chunk");
            let bytes = results[worker].recv().map_err(|_| io::Error::other("a compression thread stopped"))??;
            out.write_all(&bytes)
        };
        let mut dispatch = |text: Vec<u8>, pending: &mut VecDeque<usize>, out: &mut W| -> io::Result<()> {
            let worker = chunks % WORKERS;
            chunks += 1;
            jobs[worker].send(text).map_err(|_| io::Error::other("a compression thread stopped"))?;
            pending.push_back(worker);
            while pending.len() > WORKERS {
                write_oldest(pending, out)?;
            }
            Ok(())
        };

        let mut text = Vec::with_capacity(CHUNK_TEXT_BYTES + 4096);
        for record in &plan.records {
            match &record.line {
                Line::Valid(line) => push_valid_line(&mut text, line, &plan.players),
                Line::Junk(junk) => {
                    text.extend_from_slice(&junk.bytes);
                    text.push(b'\n');
                }
            }
            if text.len() >= CHUNK_TEXT_BYTES {
                let full = std::mem::replace(&mut text, Vec::with_capacity(CHUNK_TEXT_BYTES + 4096));
                dispatch(full, &mut pending, out)?;
            }
        }
        // The last, partial chunk; an empty plan still gets one (empty) stream.
        if !text.is_empty() || pending.is_empty() {
            dispatch(text, &mut pending, out)?;
        }
        while !pending.is_empty() {
            write_oldest(&mut pending, out)?;
        }
        Ok(())
    })
}
