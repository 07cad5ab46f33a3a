//! The `sessionlake` binary: parses the configuration, runs one subcommand,
//! and turns any error chain into one line and a non-zero exit code.
//!
//! ```text
//!  generate ──> file.jsonl.bz2 ──ingest──> landingzone/ ──raw──> r_session_events ──sessions──> uc_delta_session_events
//!                                                              └──> r_session_events_rejected             │ serve
//!                                          quarantine list|retry|drop ──> landed files that do not decompress
//!                                          db init|reset ──> Cassandra session_events.{api_start_session_by_day, api_completed_sessions}
//!                                          maintain ──> compaction, vacuum, checkpoints of the three tables
//!                                          api ──> REST: GET /models/... (Cassandra), POST /events ──> r_session_events
//! ```

mod commands;
mod config;
mod priority;
mod progress;
mod report;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::{Command, Config};

fn main() -> ExitCode {
    return_freed_memory();
    let config = Config::parse();
    let filter = match EnvFilter::try_new(&config.global.log) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("error: invalid --log filter {:?} (SESSIONLAKE_LOG): {error}", config.global.log);
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    quiet_caught_upload_abort_panics();
    progress::install();
    if config.command.is_background() {
        // Before the runtime: its threads inherit the priority.
        priority::lower_this_thread(config.global.background_nice);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match &config.command {
            Command::Generate(args) => commands::generate(&config.global, args),
            Command::Ingest(args) => commands::ingest(&config.global, args).await,
            Command::Raw(args) => commands::raw(&config.global, args).await,
            Command::Quarantine(args) => commands::quarantine(&config.global, args).await,
            Command::Sessions(args) => commands::sessions(&config.global, args).await,
            Command::Db(args) => commands::db(&config.global, args).await,
            Command::Serve(args) => commands::serve(&config.global, args).await,
            Command::Api(args) => commands::api(&config.global, args).await,
            Command::Run(args) => commands::run(&config.global, args).await,
            Command::Up(args) => commands::up(&config.global, args).await,
            Command::Insights(args) => commands::insights(&config.global, args).await,
            Command::Sql(args) => commands::sql(&config.global, args).await,
            Command::Maintain(args) => commands::maintain(&config.global, args).await,
        }
    });
    // The command is done: everything it promised (commits, Cassandra
    // writes, answers in flight) was awaited inside `block_on`. The runtime
    // is left to the process exit rather than shut down, because a shutdown
    // cancels library tasks mid-flight and some panic when cancelled: the
    // scylla driver's metadata refresh unwraps a cancelled join (found by
    // CI on `api`), the Delta kernel's executor a cancelled read.
    std::mem::forget(runtime);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One write, so other threads' output (each tracing event is
            // one write too) cannot land inside the line.
            let line = format!("error: {}\n", one_line(&error));
            let _ = std::io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// Makes glibc give large freed blocks back to the system. By default its
/// mmap threshold grows to the largest block freed so far (up to 32 MiB),
/// after which Arrow's multi-MiB buffers come from the heap and stay
/// resident when freed: `raw` on 1.5 million lines had 267 MiB of live heap
/// but 494 MiB resident, 287 MiB with the threshold fixed at 1 MiB. Setting
/// it also stops the dynamic adjustment.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn return_freed_memory() {
    // SAFETY: `mallopt` only sets a tuning parameter of the allocator, and
    // this runs first in `main`, before any other thread allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Other allocators return freed memory by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_freed_memory() {}

/// Keeps one panic that is caught by design off the user's screen.
///
/// When a parquet upload fails while finishing (disk full, read-only file
/// system), delta-rs aborts it and object_store's `BufWriter::abort`
/// panics with "Already shut down" because the upload already began to
/// shut down. delta-rs catches that panic on purpose (`catch_unwind` in
/// `deltalake_core::datafile::writer`) and returns the write's own error,
/// which this binary prints as its one error line. The default hook would
/// still print the caught panic with a backtrace, which reads like a crash;
/// this hook logs it at debug level instead. Every other panic goes to the
/// default hook unchanged.
fn quiet_caught_upload_abort_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_object_store_buffer =
            info.location().is_some_and(|at| at.file().contains("object_store") && at.file().ends_with("buffered.rs"));
        if in_object_store_buffer && info.payload_as_str() == Some("Already shut down") {
            tracing::debug!("object_store refused to abort an upload that was already finishing (caught by delta-rs)");
        } else {
            default(info);
        }
    }));
}

/// The error and its causes on one line, each said once.
pub(crate) fn one_line(error: &anyhow::Error) -> String {
    sessionlake_lake::error::one_line(error.as_ref())
}
