//! Integration tests of the lake, one binary:
//!
//! - `pipeline`: generate → ingest → raw → sessions equals the generator's truth
//! - `chunks`: the raw stage's chunk limits change no row, and bound every commit
//! - `incremental`: re-runs, crashes between commits, out-of-order arrival
//! - `landing`: copying and downloading (local HTTP server), and their errors
//! - `sessions_index`: pruning by the session → partition index never misses a stored row (far dates, moves, two writers, lost history)
//! - `permutation`: one set of lines in other files, orders, batch sizes and restarts gives the same tables
//! - `maintain`: table upkeep keeps rows and what lagging readers need; a forced gap is `HistoryGone`
//! - `live`: live ingest (`POST /events`): group commit, retries, compaction, shutdown
//! - `live_wal`: live ingest acknowledged from a write-ahead log: exactly once in any order, folded after a crash
//! - `s3`: the same lake on a real S3 server (SeaweedFS): exactness, races, leases, credentials
//! - `quarantine`: a landed file that does not decompress is set aside with its reason, retried or dropped
//! - `tables`: the tables are plain Delta Lake any reader accepts

mod chunks;
mod incremental;
mod landing;
mod live;
mod live_wal;
mod maintain;
mod permutation;
mod pipeline;
mod quarantine;
mod s3;
mod sessions_index;
mod tables;
mod util;
