//! The thread that writes the write-ahead log: group commit of appends.
//!
//! ```text
//!  append(events) ─► channel ─► WAL thread: takes every append already waiting,
//!        ▲                      writes one record each, ONE fdatasync
//!        │                      hands each record to the committer's queue (waits while it is full)
//!        └── reply: sequence ◄──┘
//!                               deletes the segments the committer has folded
//! ```
//!
//! Before taking any append, the thread hands the committer the records
//! that an earlier run acknowledged but the raw table does not hold yet.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;

use sessionlake_model::Event;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::stats::Counters;
use super::wal::{Record, Wal};
use super::{Reply, Request};

/// Most appends one sync covers.
const MAX_APPENDS_PER_SYNC: usize = 4_096;

/// What the WAL thread is asked.
pub(super) enum Message {
    /// Log these events; the reply is their record's sequence once synced.
    Append { events: Vec<Event>, reply: oneshot::Sender<Reply> },
    /// Log what is already waiting, then stop.
    Close,
}

/// Starts the WAL thread. `pending` (records an earlier run logged and the
/// raw table lacks) go to the committer first; `folded` tells up to which
/// sequence the raw table holds the records.
pub(super) fn spawn(
    wal: Wal,
    pending: Vec<Record>,
    receiver: mpsc::Receiver<Message>,
    committer: mpsc::Sender<Request>,
    folded: watch::Receiver<u64>,
    counters: Arc<Counters>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sessionlake-wal".into())
        .spawn(move || WalThread { wal, receiver, committer, folded, released: 0, counters }.run(pending))
}

struct WalThread {
    wal: Wal,
    receiver: mpsc::Receiver<Message>,
    committer: mpsc::Sender<Request>,
    folded: watch::Receiver<u64>,
    /// Segments up to this sequence are deleted already.
    released: u64,
    counters: Arc<Counters>,
}

impl WalThread {
    fn run(mut self, pending: Vec<Record>) {
        if !pending.is_empty() {
            let (records, events) = (pending.len(), pending.iter().map(|record| record.events.len()).sum::<usize>());
            info!(
                records,
                events,
                replica = self.wal.replica(),
                "folding the write-ahead log's records that the raw table lacks"
            );
            Counters::add(&self.counters.wal_records_replayed, records);
        }
        for record in pending {
            if !self.hand_over(record.events, record.seq) {
                return;
            }
        }
        let mut batch = Vec::new();
        while let Some(message) = self.receiver.blocking_recv() {
            self.take(message, &mut batch);
            while batch.len() < MAX_APPENDS_PER_SYNC {
                let Ok(message) = self.receiver.try_recv() else { break };
                self.take(message, &mut batch);
            }
            self.release_folded();
            if !batch.is_empty() && !self.log(std::mem::take(&mut batch)) {
                return;
            }
        }
        self.release_folded();
    }

    fn take(&mut self, message: Message, batch: &mut Vec<(Vec<Event>, oneshot::Sender<Reply>)>) {
        match message {
            Message::Append { events, reply } => batch.push((events, reply)),
            // What is already queued still comes out, then `None`.
            Message::Close => self.receiver.close(),
        }
    }

    /// Writes and syncs one record per append, hands them to the committer,
    /// then answers. `false` once the committer is gone.
    fn log(&mut self, batch: Vec<(Vec<Event>, oneshot::Sender<Reply>)>) -> bool {
        match self.wal.append(batch.iter().map(|(events, _)| events.as_slice())) {
            Ok(seqs) => {
                let (requests, events) = (batch.len(), batch.iter().map(|(events, _)| events.len()).sum::<usize>());
                let last = seqs.last().copied().unwrap_or_default();
                let mut handed = true;
                for ((events, reply), seq) in batch.into_iter().zip(seqs) {
                    // The record is durable: even if the committer is gone,
                    // the next start folds it, so the answer is a success.
                    handed = handed && self.hand_over(events, seq);
                    let _ = reply.send(Ok(seq as i64));
                }
                Counters::add(&self.counters.requests_acknowledged, requests);
                Counters::add(&self.counters.events_acknowledged, events);
                self.counters.wal_sequence.store(last, Relaxed);
                handed
            }
            Err(failure) => {
                error!(error = %failure, appends = batch.len(), "writing the write-ahead log failed; those requests get the error");
                Counters::add(&self.counters.requests_failed, batch.len());
                let message: Arc<str> = format!("the write-ahead log could not be written: {failure}").into();
                for (_, reply) in batch {
                    let _ = reply.send(Err(message.clone()));
                }
                true
            }
        }
    }

    /// Queues a logged record for the committer (waiting while its queue is
    /// full: that is the backpressure). `false` once the committer is gone.
    fn hand_over(&mut self, events: Vec<Event>, seq: u64) -> bool {
        let request = Request { events, reply: None, wal_seq: Some(seq) };
        if self.committer.blocking_send(request).is_err() {
            warn!(seq, "the committer's queue is closed; the log's remaining records are folded at the next start");
            return false;
        }
        true
    }

    fn release_folded(&mut self) {
        let folded = *self.folded.borrow();
        if folded <= self.released {
            return;
        }
        match self.wal.release_through(folded) {
            Ok(()) => self.released = folded,
            Err(failure) => {
                warn!(error = %failure, folded, "deleting folded write-ahead log segments failed; tried again later")
            }
        }
    }
}
