//! The stage structs as configured: one builder per stage, shared by the
//! single-stage commands, `run` and `up`, so `run` runs exactly what the
//! single-stage commands run.

use std::time::Duration;

use sessionlake_cassandra::CassandraConfig;
use sessionlake_lake::raw::{ChunkLimits, RawStage};
use sessionlake_lake::sessions::{SessionsReport, SessionsStage};
use sessionlake_model::Clock;
use sessionlake_model::crash::StopAfter;
use sessionlake_serving::serve::{ServeReport, ServeStage, WriteSettings};

use crate::config::{CassandraArgs, GlobalArgs, ServeWrites, SessionsBatching};
use crate::report;

/// Whether to draw progress bars (not with --quiet or --json).
pub(crate) fn show_progress(global: &GlobalArgs) -> bool {
    !global.quiet && !global.json
}

/// The raw stage as configured.
pub(crate) fn raw_stage(global: &GlobalArgs) -> RawStage {
    RawStage {
        lake: global.lake.clone(),
        debug: global.debug,
        chunk_limits: ChunkLimits { max_lines: global.raw_chunk_lines, max_bytes: global.raw_chunk_mb << 20 },
        show_progress: show_progress(global),
    }
}

/// The error context of a sessions pass.
pub(crate) const SESSIONS_CONTEXT: &str = "while folding raw versions into the sessions table";
/// The error context of a serve pass.
pub(crate) const SERVE_CONTEXT: &str = "while serving gold versions into Cassandra";

/// The sessions stage as configured.
pub(crate) fn sessions_stage(
    global: &GlobalArgs,
    batching: &SessionsBatching,
    show: bool,
    max_batches: StopAfter,
) -> SessionsStage {
    SessionsStage {
        lake: global.lake.clone(),
        max_versions_per_batch: batching.max_versions_per_batch,
        max_rows_per_batch: batching.max_rows_per_batch,
        max_batches,
        show_progress: show,
    }
}

/// Prints a sessions outcome that did something; a follow loop goes on.
pub(crate) fn show_sessions(global: &GlobalArgs) -> impl FnMut(&SessionsReport) -> bool {
    move |outcome| {
        if outcome.batches > 0 {
            report::print(global, "sessions", outcome);
        }
        true
    }
}

impl CassandraArgs {
    /// Where Cassandra is and how to talk to it.
    pub(crate) fn config(&self) -> CassandraConfig {
        CassandraConfig {
            nodes: self.nodes.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            keyspace: self.keyspace.clone(),
            replication: self.replication.clone(),
            connect_timeout: Duration::from_secs(5),
            read_consistency: self.read_consistency,
            write_consistency: self.write_consistency,
            write_timeout: self.write_timeout_seconds.max(Duration::from_millis(50)),
        }
    }

    /// How long a one-shot command waits for Cassandra (a follower waits
    /// for ever).
    pub(crate) fn patience(&self, follow: bool) -> Option<Duration> {
        (!follow).then(|| Duration::from_secs(self.cassandra_wait_seconds))
    }
}

/// The serve stage as configured.
pub(crate) fn serve_stage(
    global: &GlobalArgs,
    cassandra: &CassandraArgs,
    writes: &ServeWrites,
    follow: bool,
    stop_after_requests: StopAfter,
) -> ServeStage {
    ServeStage {
        lake: global.lake.clone(),
        cassandra: cassandra.config(),
        clock: Clock::from_option(global.now),
        writes: WriteSettings {
            concurrency: writes.concurrency,
            batch_rows: writes.batch_rows,
            patience: cassandra.patience(follow),
            stop_after_requests,
        },
        max_versions_per_range: writes.max_versions_per_range,
        show_progress: show_progress(global) && !follow,
    }
}

/// Prints a serve outcome that did something; a follow loop goes on unless
/// a crash-test budget ran out.
pub(crate) fn show_serve(global: &GlobalArgs) -> impl FnMut(&ServeReport) -> bool {
    move |outcome| {
        if outcome.ranges > 0 || outcome.interrupted {
            report::print(global, "serve", outcome);
        }
        !outcome.interrupted
    }
}
